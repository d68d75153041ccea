"""`load_dataset`: where annotations and images are found, and that bad datasets stop with one clear line.

A truncated or schema-invalid annotation file must never turn into a silently wrong mAP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from validator.data.coco import load_dataset
from validator.errors import InputError


def _doc(n_images: int = 3) -> dict:
    images = [{"id": 10 + i, "file_name": f"im{i}.png", "width": 8 + i, "height": 6} for i in range(n_images)]
    anns = [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 3, 2], "area": 6, "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [0, 0, 4, 4]}]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "triangle"}, {"id": 3, "name": "circle"}]}


def _write_images(folder: Path, doc: dict, skip: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for im in doc["images"]:
        if im["file_name"] not in skip:
            Image.new("RGB", (im["width"], im["height"]), (1, 2, 3)).save(folder / im["file_name"])


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_folder_with_annotations_json_and_images(tmp_path):
    doc = _doc()
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    _write_images(tmp_path / "images", doc)
    ds = load_dataset(tmp_path)
    assert ds.annotations_path == tmp_path / "annotations.json"
    assert ds.images_dir == tmp_path / "images"
    assert [r.id for r in ds.images] == [10, 11, 12]
    assert [(r.width, r.height) for r in ds.images] == [(8, 6), (9, 6), (10, 6)]
    assert ds.images[1].path == tmp_path / "images" / "im1.png"
    # category order is the JSON's order (model class i = i-th category), ids kept as they are
    assert ds.category_ids == [7, 3]
    assert ds.category_names == ["triangle", "circle"]
    # fields COCOeval needs are filled for hand-made files: iscrowd 0, area w*h, an id
    a2 = next(a for a in ds.gt["annotations"] if a["image_id"] == 11)
    assert a2["iscrowd"] == 0 and a2["area"] == 16.0
    assert ds.missing == ()


def test_coco_layout(tmp_path):
    """COCO's own layout: annotations/instances_val2017.json next to val2017/."""
    doc = _doc()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    _write_images(tmp_path / "val2017", doc)
    ds = load_dataset(tmp_path)
    assert ds.annotations_path == tmp_path / "annotations" / "instances_val2017.json"
    assert ds.images_dir == tmp_path / "val2017"
    assert len(ds.images) == 3


def test_json_path_plus_images_dir(tmp_path):
    doc = _doc()
    ann = tmp_path / "labels" / "my.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(doc))
    _write_images(tmp_path / "pictures", doc)
    ds = load_dataset(ann, tmp_path / "pictures")
    assert ds.annotations_path == ann
    assert ds.images_dir == tmp_path / "pictures"
    assert len(ds.images) == 3


def test_images_dir_not_found(tmp_path):
    doc = _doc()
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path / "a.json", tmp_path / "nope")
    _one_line(e, tmp_path / "nope")


def test_dataset_not_found(tmp_path):
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path / "missing")
    _one_line(e, tmp_path / "missing")


def test_folder_without_json(tmp_path):
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    _one_line(e, tmp_path)


def test_truncated_json(tmp_path):
    doc = _doc()
    text = json.dumps(doc, indent=1)
    ann = tmp_path / "annotations.json"
    ann.write_text(text[: len(text) // 2])
    _write_images(tmp_path / "images", doc)
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    assert "truncated" in _one_line(e, ann)


def test_binary_json(tmp_path):
    ann = tmp_path / "annotations.json"
    ann.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    _one_line(e, ann)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("images"), "images"),
    (lambda d: d.update(annotations={}), "annotations"),
    (lambda d: d.update(categories=[]), "categories"),
    (lambda d: d["annotations"][1].update(category_id=5), "unknown category_id 5"),
    (lambda d: d["annotations"][0].update(image_id=99), "unknown image_id 99"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "malformed bbox"),
    (lambda d: d["annotations"][0].update(bbox="1,2,3,4"), "malformed bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, None, 4]), "malformed bbox"),
    (lambda d: d["annotations"][0].pop("bbox"), "annotations[0]"),
    (lambda d: d["images"][0].pop("width"), "images[0]"),
    (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image ids"),
    (lambda d: d["categories"][0].pop("name"), "categories[0]"),
    (lambda d: d["images"][0].update(id=[1]), "images[0] has a non-integer id"),
    (lambda d: d["categories"][0].update(id="7"), "categories[0] has a non-integer id"),
    (lambda d: d["annotations"][0].update(category_id=[3]), "annotations[0] has a non-integer"),
])
def test_schema_errors(tmp_path, mutate, words):
    doc = _doc()
    mutate(doc)
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(doc))
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    assert words in _one_line(e, ann)


def test_top_level_list(tmp_path):
    ann = tmp_path / "annotations.json"
    ann.write_text("[]")
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    _one_line(e, ann)


def test_missing_images_error_by_default(tmp_path):
    doc = _doc()
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    _write_images(tmp_path / "images", doc, skip=("im1.png",))
    with pytest.raises(InputError) as e:
        load_dataset(tmp_path)
    msg = _one_line(e, tmp_path / "images")
    assert "1 of the 3" in msg and "im1.png" in msg and str(tmp_path / "annotations.json") in msg


def test_missing_images_counted_with_skip_missing(tmp_path):
    doc = _doc()
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    _write_images(tmp_path / "images", doc, skip=("im1.png",))
    ds = load_dataset(tmp_path, skip_missing=True)
    assert ds.missing == ("im1.png",)
    assert [r.id for r in ds.images] == [10, 12]
    # the GT evaluated is restricted to the images that exist: image 11's annotation is gone
    assert [im["id"] for im in ds.gt["images"]] == [10, 12]
    assert [a["image_id"] for a in ds.gt["annotations"]] == [10]


def test_limit_keeps_first_images_by_id(tmp_path):
    doc = _doc()
    doc["images"].reverse()  # file order must not matter: the first N by id
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    _write_images(tmp_path / "images", doc)
    ds = load_dataset(tmp_path, limit=2)
    assert [r.id for r in ds.images] == [10, 11]
    assert sorted(im["id"] for im in ds.gt["images"]) == [10, 11]
    assert sorted(a["image_id"] for a in ds.gt["annotations"]) == [10, 11]
    # a missing image beyond the limit is not an error
    (tmp_path / "images" / "im2.png").unlink()
    assert len(load_dataset(tmp_path, limit=2).images) == 2


def test_images_next_to_json_when_no_images_folder(tmp_path):
    doc = _doc()
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    _write_images(tmp_path, doc)
    ds = load_dataset(tmp_path)
    assert ds.images_dir == tmp_path
    assert len(ds.images) == 3
