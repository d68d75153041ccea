"""The shapes generator: determinism, COCO schema validity and every property the metrics need."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from validator.datasets.shapes import ShapesConfig, generate


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes120")
    generate(out, ShapesConfig(images=120, seed=11))
    doc = json.loads((out / "annotations.json").read_text())
    return out, doc


def test_same_arguments_give_identical_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, ShapesConfig(images=25, seed=7))
    generate(b, ShapesConfig(images=25, seed=7))
    generate(c, ShapesConfig(images=25, seed=8))
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) == 26  # 25 images + annotations.json
    assert da == db
    assert da["annotations.json"] != dc["annotations.json"]


def test_cli_writes_images_and_json_and_is_deterministic(tmp_path):
    for name in ("x", "y"):
        r = subprocess.run(
            [sys.executable, "-m", "validator.datasets", "shapes", "--out", str(tmp_path / name),
             "--images", "6", "--seed", "3"],
            capture_output=True, text=True, check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("annotations.json")
    assert _digest(tmp_path / "x") == _digest(tmp_path / "y")
    assert len(list((tmp_path / "x" / "images").glob("*.jpg"))) == 6


def test_coco_like_is_deterministic_and_the_same_scene_as_its_own_ids(tmp_path):
    """--coco-like: byte-identical on re-run; pycocotools loads it; annotations in the layout of val2017."""
    for name in ("x", "y"):
        r = subprocess.run([sys.executable, "-m", "validator.datasets", "shapes", "--out", str(tmp_path / name),
                            "--images", "12", "--seed", "4", "--coco-like"], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, r.stderr
    assert _digest(tmp_path / "x") == _digest(tmp_path / "y")
    doc = json.loads((tmp_path / "x" / "annotations.json").read_text())
    coco = COCO(str(tmp_path / "x" / "annotations.json"))
    assert sorted(coco.getImgIds()) == sorted(im["id"] for im in doc["images"])
    for im in doc["images"]:
        with Image.open(tmp_path / "x" / "images" / im["file_name"]) as pic:
            assert pic.size == (im["width"], im["height"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    for a in doc["annotations"]:
        if a["iscrowd"]:
            assert a["id"] == 900_000_000_000 + a["category_id"] * 100_000_000 + a["image_id"]
    used = {a["category_id"] for a in doc["annotations"]}
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert used <= {1, 18, 44, 62, 77, 90} and {names[c] for c in used} <= {
        "circle", "triangle", "square", "star", "hexagon", "cross"}
    assert names[3] == "car" and 12 not in names  # COCO's names and gaps elsewhere


def test_cli_rejects_bad_count(tmp_path):
    r = subprocess.run([sys.executable, "-m", "validator.datasets", "shapes", "--out", str(tmp_path),
                        "--images", "0"], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_pycocotools_loads_it_and_images_match(ds):
    out, doc = ds
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 120
    for im in doc["images"]:
        with Image.open(out / "images" / im["file_name"]) as pil:
            assert pil.size == (im["width"], im["height"])
    ids = [a["id"] for a in doc["annotations"]]
    assert len(ids) == len(set(ids))


def test_categories_named_and_non_contiguous(ds):
    _, doc = ds
    cats = doc["categories"]
    assert len(cats) >= 6
    ids = [c["id"] for c in cats]
    assert ids != list(range(1, len(ids) + 1)), "ids must have gaps like COCO's"
    assert all(c["name"] for c in cats)
    used = {a["category_id"] for a in doc["annotations"]}
    assert used == set(ids)


def test_several_sizes_and_aspect_ratios(ds):
    _, doc = ds
    sizes = {(i["width"], i["height"]) for i in doc["images"]}
    assert len(sizes) >= 4
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes) and any(w == h for w, h in sizes)


def test_polygons_inside_image_with_true_area_and_bbox(ds):
    _, doc = ds
    imgs = {i["id"]: i for i in doc["images"]}
    n_multi = 0
    for a in doc["annotations"]:
        if a["iscrowd"]:
            continue
        im = imgs[a["image_id"]]
        w, h = im["width"], im["height"]
        seg = a["segmentation"]
        assert isinstance(seg, list) and seg
        n_multi += len(seg) > 1
        xs = np.concatenate([np.asarray(p[0::2]) for p in seg])
        ys = np.concatenate([np.asarray(p[1::2]) for p in seg])
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
        assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= w and ys.max() <= h
        x, y, bw, bh = a["bbox"]
        assert x <= xs.min() + 0.01 and y <= ys.min() + 0.01
        assert x + bw >= xs.max() - 0.01 and y + bh >= ys.max() - 0.01
        # the stored area is the polygon's true area, not the box's; rasterised it agrees
        raster = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(seg, h, w))))
        assert a["area"] < bw * bh + 1e-6
        assert abs(raster - a["area"]) <= max(0.25 * a["area"], 25.0)
    assert n_multi > 0, "occlusion should split some objects into several visible parts"


def test_all_three_coco_area_ranges(ds):
    _, doc = ds
    areas = np.array([a["area"] for a in doc["annotations"] if not a["iscrowd"]])
    small, large = (areas < 32**2).sum(), (areas >= 96**2).sum()
    medium = len(areas) - small - large
    assert small >= 20 and medium >= 20 and large >= 10


def test_overlapping_boxes_exist(ds):
    _, doc = ds
    by_img: dict[int, list] = {}
    for a in doc["annotations"]:
        if not a["iscrowd"]:
            by_img.setdefault(a["image_id"], []).append(a["bbox"])
    overlapping = 0
    for boxes in by_img.values():
        if len(boxes) > 1:
            iou = mask_utils.iou(boxes, boxes, [0] * len(boxes))
            overlapping += int((np.triu(iou, 1) > 0).sum())
    assert overlapping >= 10


def test_crowd_regions_are_rle(ds):
    _, doc = ds
    imgs = {i["id"]: i for i in doc["images"]}
    crowds = [a for a in doc["annotations"] if a["iscrowd"] == 1]
    assert len(crowds) >= 3
    for a in crowds:
        seg = a["segmentation"]
        im = imgs[a["image_id"]]
        assert seg["size"] == [im["height"], im["width"]] and isinstance(seg["counts"], str)
        m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        assert int(m.sum()) == pytest.approx(a["area"], abs=0.5)


def test_some_images_empty_some_gray_backgrounds_textured(ds):
    out, doc = ds
    with_objects = {a["image_id"] for a in doc["annotations"]}
    empty = [i for i in doc["images"] if i["id"] not in with_objects]
    assert 1 <= len(empty) <= 0.3 * len(doc["images"])
    modes = set()
    for im in doc["images"]:
        with Image.open(out / "images" / im["file_name"]) as pil:
            modes.add(pil.mode)
    assert {"RGB", "L"} <= modes
    with Image.open(out / "images" / empty[0]["file_name"]) as pil:
        px = np.asarray(pil.convert("L"), dtype=np.float32)
    assert px.std() > 3.0, "background should be textured/noisy, not flat"
