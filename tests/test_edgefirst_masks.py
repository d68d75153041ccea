"""`--metric edgefirst` masks on the prototype grid (input / 4, letterbox space), checked by hand, and the
mode through the CLI (its decoding: class-agnostic NMS, unclipped boxes, OpenCV resize, grid masks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import MODELS
from validator.cli import main
from validator.decode.masks import proto_grid_gt, proto_grid_rles
from validator.metrics.edgefirst import evaluate_edgefirst
from validator.tensors import Letterbox


def _dense(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})


def test_predicted_grid_mask_is_positive_logits_inside_the_box_cells():
    """16x16 input, 4x4 grid (cells of 4 px). Box x 2..9, y 0..16: columns with 2/16*4 = 0.5 <= c < 9/16*4
    = 2.25 -> 1, 2; every row. Logits +1 except cell (0, 1), -1."""
    protos = np.ones((1, 4, 4), np.float32)
    protos[0, 0, 1] = -1.0
    (rle,) = proto_grid_rles(protos, np.ones((1, 1), np.float32), np.array([[2.0, 0.0, 9.0, 16.0]]), (16, 16))
    expect = np.zeros((4, 4), np.uint8)
    expect[:, 1:3] = 1
    expect[0, 1] = 0
    assert rle["size"] == [4, 4]
    np.testing.assert_array_equal(_dense(rle), expect)


def test_ground_truth_grid_mask_is_the_filled_polygon_max_pooled():
    """A square with corners (4, 4) and (11, 11) on a 16x16 input: PIL fills pixels 4..11 (outline included),
    cells 1 and 2 of each axis hold them."""
    lb = Letterbox(1.0, 1.0, 0.0, 0.0, (16, 16))
    rle = proto_grid_gt([[4, 4, 11, 4, 11, 11, 4, 11]], (16, 16), lb)
    expect = np.zeros((4, 4), np.uint8)
    expect[1:3, 1:3] = 1
    np.testing.assert_array_equal(_dense(rle), expect)
    # through a letterbox: a 32x16 image at 16x16 input -> scale 0.5, pad_y 4; the same square lands at
    # x 2..5.5 -> pixels 2..5, y 6..9.5 -> pixels 6..9: cells x 0..1, y 1..2
    rle = proto_grid_gt([[4, 4, 11, 4, 11, 11, 4, 11]], (16, 32), Letterbox(0.5, 0.5, 0.0, 4.0, (16, 16)))
    expect = np.zeros((4, 4), np.uint8)
    expect[1:3, 0:2] = 1
    np.testing.assert_array_equal(_dense(rle), expect)


def test_grid_evaluation_scores_a_matching_grid_mask_1_and_full_resolution_differently():
    """One GT square; the detection's grid mask is exactly the GT's grid mask: a perfect class on the grid,
    which EdgeFirst's AP rule scores 0.995 (the curve [0, 1, 1] x [1, 1, 0] sampled at 101 points drops to
    0 at recall 1: 0.99 + 0.01 / 2). At full resolution the same detection reads otherwise."""
    gt = {"images": [{"id": 1, "width": 16, "height": 16, "file_name": "a.png"}],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 7, 7], "area": 49,
                           "iscrowd": 0, "segmentation": [[4, 4, 11, 4, 11, 11, 4, 11]]}]}
    lb = Letterbox(1.0, 1.0, 0.0, 0.0, (16, 16))
    grid = proto_grid_gt(gt["annotations"][0]["segmentation"], (16, 16), lb)
    full = np.zeros((16, 16), np.uint8)
    full[4:12, 4:12] = 1
    enc = mask_utils.encode(np.asfortranarray(full))
    det = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 8, 8], "score": 0.9,
           "segmentation": {"size": [16, 16], "counts": enc["counts"].decode()}, "segmentation_proto": grid}
    r = evaluate_edgefirst(gt, [det], "segm", frames={1: lb})
    assert r.stats["mAP50"] == pytest.approx(0.995) and r.stats["mAP50_95"] == pytest.approx(0.995)
    r_full = evaluate_edgefirst(gt, [det], "segm")  # 64 vs 49 pixels: IoU 0.766 at full resolution
    assert r_full.stats["mAP50"] == pytest.approx(0.995)
    assert r_full.stats["mAP50_95"] == pytest.approx(0.995 * 6 / 10)  # a TP at 0.50 .. 0.75 only
    with pytest.raises(ValueError, match="segmentation_proto"):
        evaluate_edgefirst(gt, [{k: v for k, v in det.items() if k != "segmentation_proto"}], "segm", frames={1: lb})


def test_edgefirst_mode_through_the_cli(shapes_small, tmp_path):
    out = tmp_path / "o"
    assert main(["--model", str(MODELS / "shapes-seg.onnx"), "--data", str(shapes_small), "--metric", "edgefirst",
                 "--out", str(out), "--limit", "4", "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    st = s["settings"]
    assert s["metric"] == "edgefirst"
    assert (st["agnostic"], st["clip_boxes"], st["proto_masks"], st["resample"], st["multi_label"]) == (
        True, False, True, "linear", False)
    assert "metric: edgefirst (EdgeFirst validator 6.0.9-style reading, NOT COCO" in (out / "table.md").read_text()
    preds = json.loads((out / "predictions" / "shapes-seg.json").read_text())
    assert preds and all(p["segmentation_proto"]["size"] == [64, 64] for p in preds)
    assert all(p["segmentation"]["size"] != [64, 64] for p in preds)  # the COCO mask stays full size
    by_box: dict = {}
    for p in preds:
        by_box.setdefault((p["image_id"], tuple(p["bbox"])), set()).add(p["category_id"])
    assert all(len(c) == 1 for c in by_box.values())  # one label per box
    m = s["models"][0]["metrics"]
    assert m["segm"]["mAP50_95"] is not None and m["bbox"]["AR100"] is None
    # --resample given explicitly wins over the metric's default
    out2 = tmp_path / "o2"
    assert main(["--model", str(MODELS / "shapes-seg.onnx"), "--data", str(shapes_small), "--metric", "edgefirst",
                 "--resample", "antialias", "--out", str(out2), "--limit", "2", "--no-cache", "--quiet"]) == 0
    assert json.loads((out2 / "summary.json").read_text())["settings"]["resample"] == "antialias"
