"""A non-square model input (64 high, 96 wide) end to end, and `--metric compat` through the CLI.

The tiny model returns one detection at a fixed place on its 64x96 canvas; the ground truth of each image
is that box mapped back by letterbox numbers worked out by hand below, so the written box must equal it
(to the 0.01 px rounding) and mAP@0.5 must be 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODELS
from tests.tiny_models import anchor_grid, onnx_model
from validator.cli import main

H, W = 64, 96
N = (H // 8) * (W // 8) + (H // 16) * (W // 16) + (H // 32) * (W // 32)  # 96 + 24 + 6 = 126 anchors
BOX = (40.0, 10.0, 56.0, 30.0)  # canvas x1, y1, x2, y2
# image id -> (file, width, height, GT box in the image), worked by hand:
#   192x128: r = min(64/128, 96/192) = 0.5 -> 96x64, no padding: box / 0.5
#   64x64:   r = min(64/64, 96/64) = 1 -> 64x64, pad_x = (96-64)//2 = 16: x - 16
#   50x100:  r = min(64/100, 96/50) = 0.64 -> 32x64, pad_x = (96-32)//2 = 32: (x - 32) / 0.64, y / 0.64
IMAGES = {1: ("wide.png", 192, 128, (80.0, 20.0, 112.0, 60.0)),
          2: ("square.png", 64, 64, (24.0, 10.0, 40.0, 30.0)),
          3: ("tall.png", 50, 100, (12.5, 15.625, 37.5, 46.875))}


def _output() -> np.ndarray:
    grid = anchor_grid((H, W))
    assert len(grid) == N
    c = np.zeros((4 + 2, N), np.float32)
    c[0], c[1], c[2], c[3] = grid[:, 0], grid[:, 1], 8.0, 8.0
    cx, cy = (BOX[0] + BOX[2]) / 2, (BOX[1] + BOX[3]) / 2
    i = int(cy // 8) * (W // 8) + int(cx // 8)
    c[:4, i] = (cx, cy, BOX[2] - BOX[0], BOX[3] - BOX[1])
    c[5, i] = 0.9  # class 1
    return c[None]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nonsquare")
    (root / "images").mkdir()
    images, anns = [], []
    for iid, (f, w, h, (x1, y1, x2, y2)) in IMAGES.items():
        Image.new("RGB", (w, h), (100, 100, 100)).save(root / "images" / f)
        images.append({"id": iid, "file_name": f, "width": w, "height": h})
        anns.append({"id": iid, "image_id": iid, "category_id": 20, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    doc = {"images": images, "annotations": anns, "categories": [{"id": 10, "name": "a"}, {"id": 20, "name": "b"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def test_non_square_input_maps_boxes_back_exactly(tmp_path, data):
    m = onnx_model(tmp_path / "wide.onnx", [1, 3, H, W], outputs={"output0": _output()})
    out = tmp_path / "o"
    assert main(["--model", str(m), "--data", str(data), "--out", str(out), "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["models"][0]["input"]["shape"] == [1, 3, H, W]
    assert "126 anchors" in s["models"][0]["contract"]
    preds = {p["image_id"]: p for p in json.loads((out / "predictions" / "wide.json").read_text())}
    for iid, (_, _, _, (x1, y1, x2, y2)) in IMAGES.items():
        assert preds[iid]["category_id"] == 20
        np.testing.assert_allclose(preds[iid]["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.006)
    assert s["models"][0]["metrics"]["bbox"]["mAP50"] == 1.0


def test_compat_through_the_cli_decodes_multi_label_and_names_itself(shapes_small, tmp_path):
    out = tmp_path / "o"
    code = main(["--model", str(MODELS / "shapes-det.onnx"), "--data", str(shapes_small), "--metric", "compat",
                 "--out", str(out), "--limit", "6", "--no-cache", "--quiet"])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["metric"] == "compat"
    assert s["settings"]["multi_label"] is True and s["settings"]["clip_boxes"] is False
    assert "metric: compat (Ultralytics 8.4 val-style reading, NOT COCO" in (out / "table.md").read_text()
    preds = json.loads((out / "predictions" / "shapes-det.json").read_text())
    by_box: dict = {}
    for p in preds:
        by_box.setdefault((p["image_id"], tuple(p["bbox"])), set()).add(p["category_id"])
    assert any(len(c) > 1 for c in by_box.values())  # multi-label: one box, several classes
    assert s["models"][0]["metrics"]["bbox"]["AR100"] is None  # compat defines no COCO AR
