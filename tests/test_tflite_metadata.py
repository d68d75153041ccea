"""Our TFLite metadata reader against models whose metadata Google's own tooling wrote (tflite-support 0.4.4,
tests/fixtures/models/third_party), compared with what tflite-support's reader reported for them
(``<name>.expected.json``), and the SSD one end to end: uint8 [-1,1] input, a 90-line label map with
``???`` gaps, classes mapped by name onto COCO's category ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODELS
from validator.cli import main
from validator.data.labels import parse_labels
from validator.runners import open_runner
from validator.runners.tflite_file import read_tflite_file

THIRD_PARTY = MODELS / "third_party"
NAMES = ["ssd_uint8_m1p1", "yolo_float_m1p1", "yolo_float_imagenet"]


def _expected(name: str) -> dict:
    return json.loads((THIRD_PARTY / f"{name}.expected.json").read_text())["tflite_support"]


def _tensor_files(md_json: dict) -> list[tuple[str, str]]:
    out = []
    for t in md_json["subgraph_metadata"][0].get("output_tensor_metadata", []):
        out += [(f["name"], f.get("type", "UNKNOWN")) for f in t.get("associated_files", [])]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_reader_agrees_with_tflite_support(name):
    exp = _expected(name)
    md = read_tflite_file(THIRD_PARTY / f"{name}.tflite")
    ref_norm = exp["input_float32_values"][0]["normalization"][0]
    assert md["normalization"]["mean"] == ref_norm["mean"]  # exact float32 values, not the JSON's rounding
    assert md["normalization"]["std"] == ref_norm["std"]
    (fname, ftype), = _tensor_files(exp["metadata_json"])
    assert md["label_file"]["name"] == fname and ftype in md["label_file"]["where"]
    assert md["label_file"]["text"] == exp["associated_files"][fname]
    assert exp["packed_associated_file_list"] == [fname]


def test_ssd_label_map_keeps_the_model_indices():
    md = read_tflite_file(THIRD_PARTY / "ssd_uint8_m1p1.tflite")
    labels = parse_labels(md["label_file"]["text"], md["label_file"]["where"])
    assert labels.names[0] == "person" and labels.names[17] == "dog" and labels.names[61] == "chair"
    assert 11 not in labels.names  # a ??? gap: COCO has no id 12
    assert labels.count == 90 and len(labels.names) == 80


def test_ssd_runner_sees_raw_pixel_input_and_reference_labels():
    r = open_runner(THIRD_PARTY / "ssd_uint8_m1p1.tflite")
    assert r.input.dtype == "uint8" and (r.input.scale, r.input.zero_point) == (1 / 128, 128)
    assert r.precision.quantized


# ------------------------------------------------------------------------------------------ end to end
COCO_IDS = {"person": 1, "dog": 18, "chair": 62, "unicorn": 95}
# The SSD's rows: (ymin, xmin, ymax, xmax) normalised, model class index, score (tests/.../README.md).
SSD_DETS = [((0.1, 0.2, 0.5, 0.6), "person", 0.9), ((0.3, 0.4, 0.9, 0.8), "dog", 0.75),
            ((0.55, 0.05, 0.95, 0.45), "chair", 0.6)]


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory) -> Path:
    """Two 64x64 images; GT = the SSD's boxes; COCO ids and names, listed in another order."""
    root = tmp_path_factory.mktemp("coco-like")
    (root / "images").mkdir()
    images, anns = [], []
    for iid in (1, 2):
        Image.new("RGB", (64, 64), (50, 60, 70)).save(root / "images" / f"{iid}.jpg")
        images.append({"id": iid, "file_name": f"{iid}.jpg", "width": 64, "height": 64})
        for (y1, x1, y2, x2), name, _ in SSD_DETS:
            b = [x1 * 64, y1 * 64, (x2 - x1) * 64, (y2 - y1) * 64]
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": COCO_IDS[name], "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0})
    cats = [{"id": COCO_IDS[n], "name": n} for n in ("chair", "unicorn", "person", "dog")]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def test_ssd_with_metadata_labels_end_to_end(coco_like, tmp_path):
    out = tmp_path / "o"
    assert main(["--model", str(THIRD_PARTY / "ssd_uint8_m1p1.tflite"), "--data", str(coco_like), "--resize",
                 "stretch", "--out", str(out), "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    m = s["models"][0]
    assert m["classes"]["by"] == "name" and "labelmap.txt" in m["classes"]["source"]
    assert m["class_map"][0] == 1 and m["class_map"][17] == 18 and m["class_map"][61] == 62
    assert [x["name"] for x in m["classes"]["dataset_categories_missing"]] == ["unicorn"]
    assert m["input_transform"]["raw_pixels"] and m["input_transform"]["range"] == "-1,1"
    preds = json.loads((out / "predictions" / "ssd_uint8_m1p1.json").read_text())
    assert len(preds) == 6  # 3 per image: the junk row beyond `count` is ignored
    for p in preds:
        (y1, x1, y2, x2), name, score = next(d for d in SSD_DETS if COCO_IDS[d[1]] == p["category_id"])
        np.testing.assert_allclose(p["bbox"], [x1 * 64, y1 * 64, (x2 - x1) * 64, (y2 - y1) * 64], atol=0.006)
        assert p["score"] == pytest.approx(score, abs=1e-5)
    assert m["metrics"]["bbox"]["mAP50"] == 1.0
