"""`validate --names FILE` through the real CLI: 12 classes, the dataset's categories in another order than
the model's classes, every label file format.

The tiny model (tests/tiny_models.py, gain 0) returns a constant YOLO ``[1, 4+nc, 84]`` tensor on a 64x64
canvas: model class k fires once, at its own slot (a 8x8 px box in a stride-8 cell of its own). The
images are 64x64, so the letterbox is the identity and the ground truth is the same boxes. The dataset's
category for the box of slot k is ``CAT_IDS[k]`` (non-contiguous ids, listed in the JSON in the order
``JSON_ORDER``), so only the map ``model class k -> CAT_IDS[k]`` scores mAP@0.5 = 1.0; any two classes
swapped score two classes' AP 0, i.e. mAP@0.5 = 10/12.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tiny_models import anchor_grid, onnx_model, tflite_model
from validator.cli import main

HW = 64
N = 84  # anchors at 64x64 for strides 8/16/32: 8*8 + 4*4 + 2*2
# Model class order: (name, dataset category id). COCO names and ids, some names with spaces.
MODEL_CLASSES = [
    ("person", 1), ("traffic light", 10), ("fire hydrant", 11), ("stop sign", 13), ("sports ball", 37),
    ("wine glass", 46), ("hot dog", 58), ("potted plant", 64), ("dining table", 67), ("cell phone", 77),
    ("teddy bear", 88), ("toothbrush", 90),
]
NAMES = [n for n, _ in MODEL_CLASSES]
CAT_IDS = [c for _, c in MODEL_CLASSES]  # model class k is the dataset's category CAT_IDS[k]
NC = len(MODEL_CLASSES)
# The JSON lists the categories in this order of model classes: no class k is the k-th category, so the
# fallback "class i = i-th category of the JSON" is wrong for every class.
JSON_ORDER = [7, 2, 11, 0, 9, 4, 1, 10, 5, 3, 8, 6]
CATS = [{"id": CAT_IDS[k], "name": NAMES[k], "supercategory": "thing"} for k in JSON_ORDER]
BY_ORDER = [CATS[i]["id"] for i in range(NC)]  # what the JSON-order fallback would map class i to

# 16 slots: 8x8 px boxes centred on a 4x4 grid (centres 8, 24, 40, 56), each in its own stride-8 cell, no two
# overlapping. Slots 0..11 hold the ground truth; 12..15 are free (for detections of classes the dataset
# lacks).
SLOTS = [(cx - 4.0, cy - 4.0, cx + 4.0, cy + 4.0) for cy in (8, 24, 40, 56) for cx in (8, 24, 40, 56)]
IMAGE_IDS = (3, 8)  # two identical 64x64 images


def score_of(slot: int) -> float:
    return 0.9 - 0.03 * slot


# ------------------------------------------------------------------------------------------- dataset
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("names-coco")
    (root / "images").mkdir()
    images, anns = [], []
    for iid in IMAGE_IDS:
        fname = f"im{iid}.png"
        Image.new("RGB", (HW, HW), (90, 120, 150)).save(root / "images" / fname)
        images.append({"id": iid, "file_name": fname, "width": HW, "height": HW})
        for k in range(NC):
            x1, y1, x2, y2 = SLOTS[k]
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": CAT_IDS[k],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return root


# ------------------------------------------------------------------------------------------- models
def yolo_const(slots: list[int]) -> np.ndarray:
    """[1, 4+len(slots), N]: model class j fires at SLOTS[slots[j]]; every other anchor has score 0."""
    nc = len(slots)
    anchors = anchor_grid((HW, HW))
    strides = np.repeat([8.0, 16.0, 32.0], [64, 16, 4])
    a = np.zeros((4 + nc, N), np.float32)
    a[0], a[1], a[2], a[3] = anchors[:, 0], anchors[:, 1], strides, strides
    for j, s in enumerate(slots):
        x1, y1, x2, y2 = SLOTS[s]
        i = int(((y1 + y2) / 2) // 8) * (HW // 8) + int(((x1 + x2) / 2) // 8)  # its stride-8 anchor
        a[:4, i] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        a[4 + j, i] = score_of(s)
    return a[None]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The 12-class model: class k fires at slot k."""
    return onnx_model(tmp_path_factory.mktemp("m") / "det12.onnx", [1, 3, HW, HW],
                      outputs={"output0": yolo_const(list(range(NC)))})


# ------------------------------------------------------------------------------------------- label files
def write_names(path: Path, fmt: str, names: list[str]) -> Path:
    """`names` (model class order) written in format `fmt`."""
    if fmt == "coral":
        text = "".join(f"{i}  {n}\n" for i, n in enumerate(names))
    elif fmt == "colon":
        text = "".join(f"{i}: {n}\n" for i, n in enumerate(names))
    elif fmt == "plain":
        text = "".join(f"{n}\n" for n in names) + "\n\n"
    elif fmt == "json-list":
        text = json.dumps(names)
    elif fmt == "json-dict":
        text = json.dumps({str(i): n for i, n in enumerate(names)}, indent=2)
    elif fmt == "yaml-list":
        text = ("path: ../datasets/coco  # dataset root dir\ntrain: train2017.txt\nval: val2017.txt\n\n"
                "# Classes\nnames:\n" + "".join(f"  - {n}\n" for n in names))
    elif fmt == "yaml-dict":
        text = ("path: ../datasets/coco\ntrain: images/train2017\nval: images/val2017\ntest:\n\n"
                "# Classes\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    elif fmt == "pbtxt":  # ids = model class indices (0-based here)
        text = "".join(f'item {{\n  name: "/m/{i:04d}"\n  id: {i}\n  display_name: "{n}"\n}}\n'
                       for i, n in enumerate(names))
    else:
        raise AssertionError(fmt)
    path.write_text(text, encoding="utf-8")
    return path


SUFFIX = {"coral": ".txt", "colon": ".txt", "plain": ".txt", "json-list": ".json", "json-dict": ".json",
          "yaml-list": ".yaml", "yaml-dict": ".yml", "pbtxt": ".pbtxt"}


# ------------------------------------------------------------------------------------------- running
def run(capsys, out: Path, data: Path, model: Path, names: Path | None = None) -> tuple[int, str]:
    args = ["--model", str(model), "--data", str(data), "--out", str(out), "--no-cache", "--workers", "1",
            "--quiet"]
    if names is not None:
        args += ["--names", str(names)]
    code = main(args)
    return code, capsys.readouterr().err


def run_ok(capsys, out: Path, data: Path, model: Path, names: Path | None = None) -> dict:
    code, err = run(capsys, out, data, model, names)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    (m,) = s["models"]
    return m


def map50(m: dict) -> float:
    return m["metrics"]["bbox"]["mAP50"]


def check_predictions(out: Path, name: str, want: dict[int, int]) -> None:
    """Every prediction sits on its slot's box with the category `want[slot]`, on every image."""
    preds = json.loads((out / "predictions" / f"{name}.json").read_text())
    assert len(preds) == len(want) * len(IMAGE_IDS)
    for p in preds:
        x, y, w, h = p["bbox"]
        slot = SLOTS.index((x, y, x + w, y + h))
        assert p["category_id"] == want[slot], p
        assert p["score"] == pytest.approx(score_of(slot), abs=1e-5)


# ------------------------------------------------------------------------------------------- tests
def test_without_names_the_json_order_is_wrong(tmp_path, data, model, capsys):
    """The construction is sensitive: the fallback (class i = i-th JSON category) maps every class wrong."""
    m = run_ok(capsys, tmp_path / "o", data, model)
    assert m["class_map"] == BY_ORDER
    assert m["classes"]["by"] == "order"
    assert map50(m) == 0.0


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_names_file_every_format(tmp_path, data, model, capsys, fmt):
    f = write_names(tmp_path / f"names{SUFFIX[fmt]}", fmt, NAMES)
    m = run_ok(capsys, tmp_path / "o", data, model, f)
    assert m["class_map"] == CAT_IDS
    c = m["classes"]
    assert c["source"] == str(f) and c["by"] == "name" and c["mapped"] == NC
    assert c["model_classes_dropped"] == [] and c["dataset_categories_missing"] == []
    assert c["detections_dropped"] == 0
    assert map50(m) == 1.0
    assert m["metrics"]["bbox"]["mAP50_95"] == 1.0
    check_predictions(tmp_path / "o", "det12", dict(enumerate(CAT_IDS)))


def test_loose_names_match(tmp_path, data, model, capsys):
    """Other case and _/- for spaces still map by name."""
    loose = [n.replace(" ", "_").title() if k % 2 else n.replace(" ", "-").upper() for k, n in enumerate(NAMES)]
    assert not set(loose) & set(NAMES)
    m = run_ok(capsys, tmp_path / "o", data, model, write_names(tmp_path / "loose.txt", "plain", loose))
    assert m["class_map"] == CAT_IDS
    assert map50(m) == 1.0


def test_wrong_order_scores_less(tmp_path, data, model, capsys):
    """Two names swapped: classes 1 and 6 score each other's ground truth, AP 0 for both -> 10/12."""
    swapped = list(NAMES)
    swapped[1], swapped[6] = swapped[6], swapped[1]
    m = run_ok(capsys, tmp_path / "o", data, model, write_names(tmp_path / "swapped.txt", "coral", swapped))
    want = list(CAT_IDS)
    want[1], want[6] = want[6], want[1]
    assert m["class_map"] == want
    assert map50(m) < 1.0
    assert map50(m) == pytest.approx(10 / 12)
    per_class = m["metrics"]["bbox"]["per_class"]  # {str(category id): {...}}
    assert {cid for cid, pc in per_class.items() if pc["AP50"] != 1.0} == {str(CAT_IDS[1]), str(CAT_IDS[6])}
    assert per_class[str(CAT_IDS[1])]["AP50"] == 0 and per_class[str(CAT_IDS[6])]["AP50"] == 0


def test_names_matching_no_category_exit_2(tmp_path, data, model, capsys):
    bogus = [f"widget {k}" for k in range(NC)]  # same count as the dataset: still an error with --names
    f = write_names(tmp_path / "bogus.txt", "plain", bogus)
    code, err = run(capsys, tmp_path / "o", data, model, f)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert str(f) in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_three_extra_names_are_dropped(tmp_path, data, capsys):
    """A 15-class model: classes 2, 7 and 13 are not dataset categories and fire at free slots; their
    detections are dropped and counted, the other 12 map by name and score 1.0."""
    extra = {2: ("zebra crossing", 12), 7: ("unicorn", 13), 13: ("space ship", 14)}  # class -> (name, slot)
    names, slots, want = [], [], []
    it = iter(range(NC))
    for j in range(NC + len(extra)):
        if j in extra:
            names.append(extra[j][0])
            slots.append(extra[j][1])
            want.append(None)
        else:
            k = next(it)
            names.append(NAMES[k])
            slots.append(k)
            want.append(CAT_IDS[k])
    mp = onnx_model(tmp_path / "det15.onnx", [1, 3, HW, HW], outputs={"output0": yolo_const(slots)})
    m = run_ok(capsys, tmp_path / "o", data, mp, write_names(tmp_path / "names15.json", "json-list", names))
    assert m["class_map"] == want
    c = m["classes"]
    assert c["mapped"] == NC and c["by"] == "name"
    assert c["model_classes_dropped"] == [{"index": 2, "name": "zebra crossing"}, {"index": 7, "name": "unicorn"},
                                          {"index": 13, "name": "space ship"}]
    assert c["dataset_categories_missing"] == []
    assert c["detections_dropped"] == 3 * len(IMAGE_IDS)
    assert map50(m) == 1.0
    check_predictions(tmp_path / "o", "det15", dict(enumerate(CAT_IDS)))


def test_names_file_with_fewer_categories_lists_missing(tmp_path, data, model, capsys):
    """Names for 10 of the 12 classes (a gap at 4, the last one absent): classes 4 and 11 are dropped, their
    categories listed as missing, and their AP is 0 (their ground truth is never predicted)."""
    text = "".join(f"{k}  {n}\n" for k, n in enumerate(NAMES) if k not in (4, 11))
    f = tmp_path / "partial.txt"
    f.write_text(text, encoding="utf-8")
    m = run_ok(capsys, tmp_path / "o", data, model, f)
    want = [c if k not in (4, 11) else None for k, c in enumerate(CAT_IDS)]
    assert m["class_map"] == want
    c = m["classes"]
    assert c["mapped"] == NC - 2
    assert c["model_classes_dropped"] == [{"index": 4, "name": ""}, {"index": 11, "name": ""}]
    assert c["dataset_categories_missing"] == [{"id": CATS[i]["id"], "name": CATS[i]["name"]}
                                               for i in range(NC) if JSON_ORDER[i] in (4, 11)]
    assert c["detections_dropped"] == 2 * len(IMAGE_IDS)
    assert map50(m) == pytest.approx(10 / 12)
    per_class = m["metrics"]["bbox"]["per_class"]
    assert per_class[str(CAT_IDS[4])]["AP50"] == 0 and per_class[str(CAT_IDS[11])]["AP50"] == 0


def test_tflite_zip_metadata_names_without_names_flag(tmp_path, data, capsys):
    """Ultralytics' LiteRT export: names in the appended zip's metadata.json ({"0": name} keys) map by name."""
    mp = tflite_model(tmp_path / "det12.tflite", [1, HW, HW, 3],
                      outputs={"Identity": (yolo_const(list(range(NC))), "float32", None)},
                      zip_metadata={"names": {str(k): n for k, n in enumerate(NAMES)}, "imgsz": [HW, HW],
                                    "task": "detect", "stride": 32})
    m = run_ok(capsys, tmp_path / "o", data, mp)
    assert m["class_map"] == CAT_IDS
    assert m["classes"]["by"] == "name" and m["classes"]["mapped"] == NC
    assert "metadata" in m["classes"]["source"]
    assert map50(m) == 1.0
    check_predictions(tmp_path / "o", "det12", dict(enumerate(CAT_IDS)))


def test_more_names_than_model_classes_exit_2(tmp_path, data, model, capsys):
    f = write_names(tmp_path / "names13.yaml", "yaml-list", [*NAMES, "zebra"])
    code, err = run(capsys, tmp_path / "o", data, model, f)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert str(f) in lines[0] and "12 classes" in lines[0]


def test_metadata_names_matching_nothing_fall_back_to_json_order(tmp_path, data, capsys):
    """A model exported without real names (class0..class11, same count as the dataset): the JSON's order."""
    mp = onnx_model(tmp_path / "anon.onnx", [1, 3, HW, HW], outputs={"output0": yolo_const(list(range(NC)))},
                    metadata={"names": repr({k: f"class{k}" for k in range(NC)})})
    m = run_ok(capsys, tmp_path / "o", data, mp)
    assert m["class_map"] == BY_ORDER
    assert m["classes"]["by"] == "order"


def test_names_file_overrides_metadata_names(tmp_path, data, capsys):
    """Metadata names in the JSON's (wrong) order; --names in the model's order wins."""
    mp = onnx_model(tmp_path / "md.onnx", [1, 3, HW, HW], outputs={"output0": yolo_const(list(range(NC)))},
                    metadata={"names": repr({i: c["name"] for i, c in enumerate(CATS)})})
    m = run_ok(capsys, tmp_path / "a", data, mp)
    assert m["class_map"] == BY_ORDER and map50(m) == 0.0  # the metadata's names are wrong for this model
    m = run_ok(capsys, tmp_path / "b", data, mp, write_names(tmp_path / "n.json", "json-dict", NAMES))
    assert m["class_map"] == CAT_IDS
    assert m["classes"]["source"] == str(tmp_path / "n.json")
    assert map50(m) == 1.0


def test_names_file_overrides_metadata_names_of_the_wrong_count(tmp_path, data, capsys):
    mp = onnx_model(tmp_path / "stale.onnx", [1, 3, HW, HW], outputs={"output0": yolo_const(list(range(NC)))},
                    metadata={"names": repr({0: "cat", 1: "dog", 2: "bird"})})
    m = run_ok(capsys, tmp_path / "o", data, mp, write_names(tmp_path / "n.txt", "coral", NAMES))
    assert m["class_map"] == CAT_IDS
    assert map50(m) == 1.0


def test_cached_predictions_follow_the_names_file_contents(tmp_path, data, model, capsys):
    """Same model, same --names path, its contents changed: the cache must not give back the old mapping."""
    f = write_names(tmp_path / "names.txt", "plain", NAMES)
    args = ["--model", str(model), "--data", str(data), "--names", str(f), "--workers", "1", "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    swapped = list(NAMES)
    swapped[0], swapped[11] = swapped[11], swapped[0]
    write_names(f, "plain", swapped)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["models"][0]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["models"][0]
    assert map50(a) == 1.0
    assert b["class_map"][0] == CAT_IDS[11] and b["class_map"][11] == CAT_IDS[0]
    assert map50(b) == pytest.approx(10 / 12)
