"""Every output contract of DESIGN.md through the real `validate` CLI, on tiny models with known outputs.

Each model returns constants (tests/tiny_models.py) that encode three detections on the 64x64 canvas,
so every image gets the same canvas detections. The tiny dataset's ground truth is those detections
mapped back to each image by hand-worked letterbox numbers (below), so a correct pipeline must write
exactly those boxes (to rounding) and score mAP@0.5 = 1.0; any error in layout reading, box units,
quantization, class mapping or un-letterboxing shows as a wrong box or a lower mAP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.tiny_models import anchor_grid, onnx_model, tflite_model
from validator.cli import main

# pycocotools' decode under numpy 2 (test side only)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")

HW = 64
N = 84  # anchors at 64x64 for strides 8/16/32: 8*8 + 4*4 + 2*2
NM = 32  # mask coefficients / prototypes
# Non-contiguous ids in a non-sorted order: model class i is the i-th category of the JSON.
CATS = [{"id": 7, "name": "triangle"}, {"id": 3, "name": "circle"}, {"id": 12, "name": "square"}]
NC = len(CATS)
# Canvas detections (x1, y1, x2, y2), model class, score. Coordinates are multiples of 0.25 and scores of
# 1/256 so that int8 outputs with scale 1/256 represent them exactly. All lie inside the content area
# of every image below (x in [10, 53], y in [16, 48]).
DETS = [((12.0, 18.0, 30.0, 34.0), 0, 0.875), ((34.0, 20.0, 52.0, 46.0), 1, 0.75), ((20.0, 36.0, 40.0, 47.0), 2, 0.625)]
# Mask of each detection: a horizontal band of rows (canvas y1, y2), aligned to the 4-px prototype cells and
# inside its box; the mask is that band cut by the box, a rectangle. A band, not a small rectangle, because
# bilinear upsampling rounds the corners of a 2-D step: a band's only edges are 1-D ramps between a -10 and
# a +10 cell, whose zero crossing is exactly on the cell boundary.
MASK_BANDS = [(20, 32), (24, 44), (40, 44)]
COEF = 0.5  # one-hot mask coefficient; prototypes are +-10, so logits are +-5

# Images: id -> (file, width, height). How each lands on the 64x64 canvas, worked out by hand:
#   wide 128x64:  r = min(64/64, 64/128) = 0.5 -> 64x32, pad_y = (64-32)/2 = 16
#   tall 64x96:   r = min(64/96, 64/64) = 2/3 -> round(42.67) = 43 x 64, pad_x = (64-43)//2 = 10,
#                 scale_x = 43/64 (the resized content's own scale), scale_y = 64/96
#   square 64x64: identity
IMAGES = {1: ("wide.png", 128, 64), 2: ("tall.jpg", 64, 96), 5: ("square.png", 64, 64)}
LETTERBOX = {1: (0.5, 0.5, 0.0, 16.0), 2: (43 / 64, 2 / 3, 10.0, 0.0), 5: (1.0, 1.0, 0.0, 0.0)}  # sx, sy, px, py
STRETCH = {1: (0.5, 1.0, 0.0, 0.0), 2: (1.0, 2 / 3, 0.0, 0.0), 5: (1.0, 1.0, 0.0, 0.0)}
CROWD_IMAGE = 1  # on this image the class-2 object is a crowd region: its detection must be ignored


def _to_orig(box, geom):
    sx, sy, px, py = geom
    x1, y1, x2, y2 = box
    return ((x1 - px) / sx, (y1 - py) / sy, (x2 - px) / sx, (y2 - py) / sy)


def _polygon(b):
    x1, y1, x2, y2 = b
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


# ------------------------------------------------------------------------------------------- dataset
def make_dataset(root: Path, mode: str = "letterbox") -> Path:
    """Images written with Pillow and a COCO JSON whose GT is DETS mapped back through `mode`."""
    geoms = LETTERBOX if mode == "letterbox" else STRETCH
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for iid, (fname, w, h) in IMAGES.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(root / "images" / fname)
        images.append({"id": iid, "file_name": fname, "width": w, "height": h})
        for (box, cls, _), band in zip(DETS, MASK_BANDS, strict=True):
            x1, y1, x2, y2 = _to_orig(box, geoms[iid])
            crowd = iid == CROWD_IMAGE and cls == 2
            if crowd:  # a crowd region somewhat larger than the object
                x1, y1, x2, y2 = max(0, x1 - 4), max(0, y1 - 4), min(w, x2 + 4), min(h, y2 + 4)
            mx1, my1, mx2, my2 = (x1, y1, x2, y2) if crowd else _to_orig((box[0], band[0], box[2], band[1]),
                                                                         geoms[iid])
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": CATS[cls]["id"],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (mx2 - mx1) * (my2 - my1),
                         "iscrowd": int(crowd), "segmentation": _polygon((mx1, my1, mx2, my2))})
    doc = {"images": images, "annotations": anns, "categories": CATS}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-coco"))


@pytest.fixture(scope="module")
def data_stretch(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-coco-stretch"), "stretch")


# ------------------------------------------------------------------------------------------- tensors
def _anchor_of(box) -> int:
    """Index of the stride-8 anchor whose cell holds the box centre (stride-8 anchors come first)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return int(cy // 8) * (HW // 8) + int(cx // 8)


def yolo_channels(normalized: bool = False, masks: bool = False) -> np.ndarray:
    """[4+NC(+NM), N]: grid-anchored boxes (cx, cy, stride, stride) everywhere, score 0 except on DETS."""
    anchors = anchor_grid((HW, HW))
    strides = np.repeat([8.0, 16.0, 32.0], [64, 16, 4])
    a = np.zeros((4 + NC + (NM if masks else 0), N), np.float32)
    a[0], a[1], a[2], a[3] = anchors[:, 0], anchors[:, 1], strides, strides
    for k, (box, cls, score) in enumerate(DETS):
        i = _anchor_of(box)
        a[:4, i] = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1])
        a[4 + cls, i] = score
        if masks:
            a[4 + NC + k, i] = COEF
    if normalized:
        a[:4] /= HW
    return a


def protos(nhwc: bool = False) -> np.ndarray:
    """[1, NM, 16, 16] (or NHWC): prototype k is +10 on the rows of cells of MASK_BANDS[k], -10 elsewhere."""
    p = np.full((NM, HW // 4, HW // 4), -10.0, np.float32)
    for k, (y1, y2) in enumerate(MASK_BANDS):
        p[k, y1 // 4: y2 // 4, :] = 10.0
    return p.transpose(1, 2, 0)[None] if nhwc else p[None]


def end2end_rows(k: int = 10) -> np.ndarray:
    rows = np.zeros((1, k, 6), np.float32)
    for j, (box, cls, score) in enumerate(DETS):
        rows[0, j] = (*box, score, cls)
    return rows


def ssd_outputs(k: int = 10) -> dict[str, np.ndarray]:
    """TF-OD-API postprocess: boxes yxyx in [0,1], classes, scores, count. Row 3 is junk beyond the count."""
    boxes = np.zeros((1, k, 4), np.float32)
    classes = np.zeros((1, k), np.float32)
    scores = np.zeros((1, k), np.float32)
    for j, (box, cls, score) in enumerate(DETS):
        x1, y1, x2, y2 = (v / HW for v in box)
        boxes[0, j], classes[0, j], scores[0, j] = (y1, x1, y2, x2), cls, score
    boxes[0, 3], classes[0, 3], scores[0, 3] = (0.1, 0.1, 0.9, 0.9), 1, 0.99  # must be ignored: count is 3
    return {"detection_boxes": boxes, "detection_classes": classes, "detection_scores": scores,
            "num_detections": np.array([3.0], np.float32)}


Q = (1 / 256, -128)  # int8 parameters that hold [0, 255/256] exactly in steps of 1/256
QP = (0.1, 0)  # int8 prototypes: +-10 -> +-100


# ------------------------------------------------------------------------------------------- running
def run_cli(capsys, out: Path, data: Path, *models, extra=()) -> dict:
    code = main([*map(str, models), "--data", str(data), "--out", str(out), "--no-cache", "--workers", "1",
                 *map(str, extra)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads((out / "summary.json").read_text())


def expected(mode: str = "letterbox", include=(0, 1, 2)) -> dict[int, list[tuple[int, tuple, float]]]:
    """image id -> [(category id, original xyxy, score)] best first."""
    geoms = LETTERBOX if mode == "letterbox" else STRETCH
    return {iid: [(CATS[DETS[k][1]]["id"], _to_orig(DETS[k][0], geoms[iid]), DETS[k][2]) for k in include]
            for iid in IMAGES}


def check_predictions(out: Path, name: str, mode: str = "letterbox", tol: float = 0.02) -> list[dict]:
    """Boxes, categories and scores of `predictions/<name>.json` against the hand-mapped DETS.

    0.02 px: predictions are written rounded to 0.01 px and everything else is exact by construction; a
    loose 0.5 px would let e.g. scale_x = r = 2/3 instead of 43/64 on the tall image (0.49 px) through.
    """
    preds = json.loads((out / "predictions" / f"{name}.json").read_text())
    exp = expected(mode)
    by_image: dict[int, list[dict]] = {}
    for p in preds:
        by_image.setdefault(p["image_id"], []).append(p)
    assert sorted(by_image) == sorted(IMAGES), by_image.keys()
    for iid, want in exp.items():
        got = sorted(by_image[iid], key=lambda p: -p["score"])
        assert len(got) == len(want), (iid, got)
        for p, (cat, box, score) in zip(got, want, strict=True):
            x, y, w, h = p["bbox"]
            assert p["category_id"] == cat, (iid, p)
            assert p["score"] == pytest.approx(score, abs=1e-4)
            np.testing.assert_allclose([x, y, x + w, y + h], box, atol=tol, err_msg=f"image {iid}: {p}")
    return preds


def model_metrics(summary: dict, name: str) -> dict:
    return next(m for m in summary["models"] if m["name"] == name)["metrics"]


def assert_perfect(summary: dict, name: str, segm: bool = False) -> None:
    m = model_metrics(summary, name)
    assert m["bbox"]["mAP50"] == pytest.approx(1.0)
    assert m["bbox"]["mAP50_95"] == pytest.approx(1.0)
    if segm:
        assert m["segm"]["mAP50"] == pytest.approx(1.0)
    else:
        assert "segm" not in m


def check_masks(preds: list[dict], mode: str = "letterbox") -> None:
    """Each mask is a rectangle on the original image: the pixels whose centre lies in the detection's box
    (x) and maps strictly inside its prototype band (y: the logit is exactly 0 on the band's edge)."""
    geoms = LETTERBOX if mode == "letterbox" else STRETCH
    for p in preds:
        w, h = IMAGES[p["image_id"]][1:]
        k = next(i for i, (_, c, _) in enumerate(DETS) if CATS[c]["id"] == p["category_id"])
        sx, sy, px, py = geoms[p["image_id"]]
        x1, _, x2, _ = _to_orig(DETS[k][0], geoms[p["image_id"]])
        b1, b2 = MASK_BANDS[k]
        cx = np.arange(w) + 0.5  # original pixel centres
        cy = (np.arange(h) + 0.5) * sy + py  # canvas row of each original pixel centre
        want = ((cy > b1) & (cy < b2))[:, None] & ((cx >= x1) & (cx < x2))[None, :]
        rle = dict(p["segmentation"])
        assert rle["size"] == [h, w]
        got = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(got, want, err_msg=f"mask of {p}")


# ------------------------------------------------------------------------------------------- YOLO monolithic
def test_yolo_pixels_nchw_float(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "det_px.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    s = run_cli(capsys, tmp_path / "out", data, "--float", m)
    check_predictions(tmp_path / "out", "det_px")
    assert_perfect(s, "det_px")
    model = s["models"][0]
    assert model["box_units"] == "pixels"
    assert model["class_map"] == [7, 3, 12]


def test_yolo_normalized_auto_detected(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "det_norm.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels(True)[None]})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    check_predictions(tmp_path / "out", "det_norm")
    assert_perfect(s, "det_norm")
    assert s["models"][0]["box_units"] == "normalized"


def test_yolo_boxes_override(tmp_path, data, capsys):
    """--boxes normalized decodes the [0,1] model right; --boxes pixels is obeyed even though it is wrong:
    the boxes come out 64x too small (checked on the identity-letterboxed square image)."""
    m = onnx_model(tmp_path / "det_norm.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels(True)[None]})
    s = run_cli(capsys, tmp_path / "a", data, "--model", m, extra=["--boxes", "normalized"])
    check_predictions(tmp_path / "a", "det_norm")
    assert s["models"][0]["box_units"] == "normalized"

    s = run_cli(capsys, tmp_path / "b", data, "--model", m, extra=["--boxes", "pixels"])
    assert s["models"][0]["box_units"] == "pixels"
    preds = [p for p in json.loads((tmp_path / "b" / "predictions" / "det_norm.json").read_text())
             if p["image_id"] == 5]
    got = sorted(preds, key=lambda p: -p["score"])
    for p, (box, _, _) in zip(got, DETS, strict=True):
        x, y, w, h = p["bbox"]
        np.testing.assert_allclose([x, y, x + w, y + h], [v / HW for v in box], atol=0.011)  # 2-decimal rounding
    assert model_metrics(s, "det_norm")["bbox"]["mAP50"] == pytest.approx(0.0)


def test_yolo_transposed_nhwc_input(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "det_t.onnx", [1, HW, HW, 3], outputs={"output0": yolo_channels().T[None]})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    check_predictions(tmp_path / "out", "det_t")
    assert_perfect(s, "det_t")
    assert s["models"][0]["input"]["layout"] == "NHWC"


def test_yolo_split_boxes_scores(tmp_path, data, capsys):
    a = yolo_channels()
    m = onnx_model(tmp_path / "split.onnx", [1, 3, HW, HW], outputs={"scores": a[4:][None], "boxes": a[:4][None]})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    check_predictions(tmp_path / "out", "split")
    assert_perfect(s, "split")


# ------------------------------------------------------------------------------------------- segmentation
def test_seg_protos_nchw(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "seg.onnx", [1, 3, HW, HW],
                   outputs={"output0": yolo_channels(masks=True)[None], "output1": protos()})
    s = run_cli(capsys, tmp_path / "out", data, "--float", m)
    preds = check_predictions(tmp_path / "out", "seg")
    check_masks(preds)
    assert_perfect(s, "seg", segm=True)


def test_seg_split_protos_nchw(tmp_path, data, capsys):
    a = yolo_channels(masks=True)
    m = onnx_model(tmp_path / "segsplit.onnx", [1, 3, HW, HW], outputs={
        "boxes": a[:4][None], "scores": a[4:4 + NC][None], "coefs": a[4 + NC:][None], "protos": protos()})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    check_masks(check_predictions(tmp_path / "out", "segsplit"))
    assert_perfect(s, "segsplit", segm=True)


def test_seg_protos_nhwc_quantized_tflite(tmp_path, data, capsys):
    """Ultralytics INT8 seg export look: uint8 input, int8 outputs, [0,1] boxes, NHWC prototypes."""
    m = tflite_model(tmp_path / "seg_int8.tflite", [1, HW, HW, 3], "uint8", (1 / 255, 0), outputs={
        "Identity": (yolo_channels(True, masks=True)[None], "int8", Q),
        "Identity_1": (protos(nhwc=True), "int8", QP)})
    s = run_cli(capsys, tmp_path / "out", data, "--int8", m)
    check_masks(check_predictions(tmp_path / "out", "seg_int8"))
    assert_perfect(s, "seg_int8", segm=True)
    model = s["models"][0]
    assert model["box_units"] == "normalized" and model["input"]["dtype"] == "uint8"


def test_task_detect_drops_masks(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "seg.onnx", [1, 3, HW, HW],
                   outputs={"output0": yolo_channels(masks=True)[None], "output1": protos()})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m, extra=["--task", "detect"])
    preds = check_predictions(tmp_path / "out", "seg")
    assert all("segmentation" not in p for p in preds)
    assert_perfect(s, "seg", segm=False)


# ------------------------------------------------------------------------------------------- post-NMS heads
def test_end2end(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "e2e.onnx", [1, 3, HW, HW], outputs={"output0": end2end_rows()})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    check_predictions(tmp_path / "out", "e2e")
    assert_perfect(s, "e2e")


def test_ssd_postprocessed_stretch(tmp_path, data_stretch, capsys):
    outs = {k: (v, "float32", None) for k, v in ssd_outputs().items()}
    m = tflite_model(tmp_path / "ssd.tflite", [1, HW, HW, 3], outputs=outs)
    s = run_cli(capsys, tmp_path / "out", data_stretch, "--model", m, extra=["--resize", "stretch"])
    check_predictions(tmp_path / "out", "ssd", mode="stretch")
    assert_perfect(s, "ssd")


# ------------------------------------------------------------------------------------------- quantized TFLite
def test_float_vs_int8_uint8_input_int8_outputs(tmp_path, data, capsys):
    """The usual pair: float ONNX vs an INT8 TFLite (uint8 NHWC input, int8 [0,1]-box outputs): equal
    detections, so every delta is 0."""
    f = onnx_model(tmp_path / "det.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    q = tflite_model(tmp_path / "det_int8.tflite", [1, HW, HW, 3], "uint8", (1 / 255, 0),
                     outputs={"Identity": (yolo_channels(True)[None], "int8", Q)})
    s = run_cli(capsys, tmp_path / "out", data, "--float", f, "--int8", q)
    check_predictions(tmp_path / "out", "det")
    check_predictions(tmp_path / "out", "det_int8")
    assert_perfect(s, "det")
    assert_perfect(s, "det_int8")
    (d,) = s["deltas"]
    assert (d["reference"], d["model"]) == ("det", "det_int8")
    assert d["metrics"]["bbox"]["mAP50"] == 0 and d["metrics"]["bbox"]["mAP50_95"] == 0
    q_in = next(m for m in s["models"] if m["name"] == "det_int8")["input"]
    assert q_in["dtype"] == "uint8" and q_in["layout"] == "NHWC"
    assert q_in["quantization"] == pytest.approx([1 / 255, 0])


def test_heads_that_differ_are_said_and_like_heads_are_not(tmp_path, data, capsys):
    """Ultralytics' INT8 LiteRT export of YOLO26 drops the end-to-end head: an end-to-end float ONNX was
    compared with a one-to-many INT8 model (NMS by us) without a word. Now the Δ row gets a note, in
    summary.json, the table and the report; a float ONNX beside its split [0,1]-box INT8 twin gets none."""
    e2e = onnx_model(tmp_path / "e2e.onnx", [1, 3, HW, HW], outputs={"output0": end2end_rows()})
    mono = onnx_model(tmp_path / "mono.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    a = yolo_channels(True)
    split = tflite_model(tmp_path / "split_i8.tflite", [1, 3, HW, HW], "int8", (1 / 255, -128), outputs={
        "boxes": (a[:4][None], "int8", Q), "scores": (a[4:][None], "int8", Q)})
    s = run_cli(capsys, tmp_path / "o1", data, "--float", e2e, "--int8", split)
    (d,) = s["deltas"]
    heads = d["heads_differ"]
    assert heads["differences"][0] == ("post-processing: reference NMS in the graph (end-to-end head, 10 rows), "
                                       "model NMS by qharness (one-to-many head, 84 anchors)")
    assert "one-to-many" in heads["advice"] and "xyxy pixels" in heads["differences"][-1]
    table = (tmp_path / "o1" / "table.md").read_text()
    assert "Heads differ, split_i8 vs e2e: post-processing" in table
    assert "Heads differ" in (tmp_path / "o1" / "report.html").read_text()
    s = run_cli(capsys, tmp_path / "o2", data, "--float", mono, "--int8", split)
    assert "heads_differ" not in s["deltas"][0]
    assert "Heads differ" not in (tmp_path / "o2" / "table.md").read_text()


def test_int8_input_nchw_split_int8_outputs(tmp_path, data, capsys):
    a = yolo_channels(True)
    q = tflite_model(tmp_path / "split_i8.tflite", [1, 3, HW, HW], "int8", (1 / 255, -128), outputs={
        "boxes": (a[:4][None], "int8", Q), "scores": (a[4:][None], "int8", Q)})
    s = run_cli(capsys, tmp_path / "out", data, "--int8", q)
    check_predictions(tmp_path / "out", "split_i8")
    assert_perfect(s, "split_i8")
    assert s["models"][0]["input"]["layout"] == "NCHW" and s["models"][0]["input"]["dtype"] == "int8"


def test_cached_rerun_gives_the_same_predictions(tmp_path, data, capsys):
    """Second run with the same model, data and settings reads the cache: same predictions, same metrics."""
    m = onnx_model(tmp_path / "c.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    args = ["--model", m, "--data", data, "--workers", "1", "--cache-dir", tmp_path / "cache"]
    for out in ("first", "second"):
        assert main([str(a) for a in [*args, "--out", tmp_path / out]]) == 0
    capsys.readouterr()
    timing = json.loads((tmp_path / "second" / "timing.json").read_text())
    assert timing["c"]["cached"] is True
    check_predictions(tmp_path / "second", "c")
    assert ((tmp_path / "first" / "predictions" / "c.json").read_text()
            == (tmp_path / "second" / "predictions" / "c.json").read_text())
    assert_perfect(json.loads((tmp_path / "second" / "summary.json").read_text()), "c")


# ------------------------------------------------------------------------------------------- metadata names
def test_metadata_names_map_classes_by_name(tmp_path, data, capsys):
    """Class names in the model's metadata win over the JSON order: reversed names, reversed mapping."""
    a = yolo_channels()
    a[4:4 + NC] = a[4:4 + NC][::-1].copy()  # class k of this model is CATS[NC-1-k]
    names = {i: c["name"] for i, c in enumerate(reversed(CATS))}
    m = onnx_model(tmp_path / "named.onnx", [1, 3, HW, HW], outputs={"output0": a[None]},
                   metadata={"names": repr(names), "imgsz": "[64, 64]"})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    assert s["models"][0]["class_map"] == [12, 3, 7]
    check_predictions(tmp_path / "out", "named")
    assert_perfect(s, "named")


# ------------------------------------------------------------------------------------------- errors and tables
def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_unidentifiable_outputs_exit_2(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "odd.onnx", [1, 3, HW, HW], outputs={
        "foo": np.zeros((1, 5, 7), np.float32), "bar": np.zeros((1, 9), np.float32)})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    line = _error_line(capsys)
    assert "foo[1,5,7]" in line and "bar[1,9]" in line and str(m) in line
    assert not (tmp_path / "o" / "summary.json").exists()


def test_class_count_mismatch_exit_2(tmp_path, data, capsys):
    a = yolo_channels()[:4 + 2]  # a 2-class head against a 3-category dataset
    m = onnx_model(tmp_path / "nc2.onnx", [1, 3, HW, HW], outputs={"output0": a[None]})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    line = _error_line(capsys)
    assert "2 classes" in line and "3" in line and str(m) in line


def test_metadata_class_count_mismatch_exit_2(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "md2.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]},
                   metadata={"names": "{0: 'cat', 1: 'dog'}"})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    line = _error_line(capsys)
    assert "metadata names 2 classes" in line and "outputs hold 3" in line


def _table_rows(out: Path) -> list[str]:
    lines = (out / "table.md").read_text().splitlines()
    return [ln for ln in lines if ln.startswith("| ")][1:]  # drop the header; the |---| rule has no space


def test_model_alone_one_row(tmp_path, data, capsys):
    m = onnx_model(tmp_path / "solo.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    s = run_cli(capsys, tmp_path / "out", data, "--model", m)
    rows = _table_rows(tmp_path / "out")
    assert len(rows) == 1 and "solo" in rows[0] and "100.00%" in rows[0]
    assert s["deltas"] == []
    assert len((tmp_path / "out" / "table.csv").read_text().strip().splitlines()) == 2


def test_two_int8_models_two_rows_and_two_deltas(tmp_path, data, capsys):
    f = onnx_model(tmp_path / "ref.onnx", [1, 3, HW, HW], outputs={"output0": yolo_channels()[None]})
    q1 = tflite_model(tmp_path / "v1.tflite", [1, HW, HW, 3], "uint8", (1 / 255, 0),
                      outputs={"Identity": (yolo_channels(True)[None], "int8", Q)})
    a = yolo_channels(True)
    a[4 + 2] = 0.0  # this variant lost class 2 ("square", id 12): its AP drops from 1 to 0
    q2 = tflite_model(tmp_path / "v2.tflite", [1, HW, HW, 3], "int8", (1 / 255, -128),
                      outputs={"Identity": (a[None], "int8", Q)})
    s = run_cli(capsys, tmp_path / "out", data, "--float", f, "--int8", q1, "--int8", q2, extra=["--workers", "2"])
    rows = _table_rows(tmp_path / "out")
    assert len(rows) == 5, rows
    assert [r.startswith("| Δ") for r in rows] == [False, False, False, True, True]
    assert [(d["reference"], d["model"]) for d in s["deltas"]] == [("ref", "v1"), ("ref", "v2")]
    assert s["deltas"][0]["metrics"]["bbox"]["mAP50"] == 0
    # v2 misses one class of three: mAP50 falls by a third, -33.33 points
    assert s["deltas"][1]["metrics"]["bbox"]["mAP50"] == pytest.approx(-100 / 3, abs=0.01)
    per_class = {r["category_id"]: r for r in s["deltas"][1]["metrics"]["bbox"]["per_class"]}
    assert per_class[12]["dAP50"] == pytest.approx(-100.0)
    assert per_class[7]["dAP50"] == 0 and per_class[3]["dAP50"] == 0


def test_class_index_beyond_dataset_exit_2(tmp_path, data, capsys):
    rows = end2end_rows()
    rows[0, 0, 5] = 5  # class 5 of a model validated on 3 categories
    m = onnx_model(tmp_path / "e2e5.onnx", [1, 3, HW, HW], outputs={"output0": rows})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    assert str(m) in _error_line(capsys)


def test_negative_class_index_exit_2(tmp_path, data, capsys):
    rows = end2end_rows()
    rows[0, 0, 5] = -1
    m = onnx_model(tmp_path / "e2eneg.onnx", [1, 3, HW, HW], outputs={"output0": rows})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    assert str(m) in _error_line(capsys)


def test_nan_in_outputs_exit_2_named_and_counted(tmp_path, data, capsys):
    """NaN in an output is reported with the output's name and on how many images it appeared."""
    a = yolo_channels()
    a[4, 10] = np.nan
    m = onnx_model(tmp_path / "nan.onnx", [1, 3, HW, HW], outputs={"output0": a[None]})
    code = main(["--model", str(m), "--data", str(data), "--out", str(tmp_path / "o"), "--no-cache"])
    assert code == 2
    line = _error_line(capsys)
    assert str(m) in line and "NaN/Inf" in line and "'output0' in 3 of 3 images" in line
    assert not (tmp_path / "o" / "summary.json").exists()


def test_empty_prediction_set_is_a_valid_zero(tmp_path, data, capsys):
    """A model that never fires gives mAP 0.0 and an empty predictions file, not a crash."""
    a = yolo_channels()
    a[4:] = 0.0  # every class score 0: nothing passes conf 0.001
    m = onnx_model(tmp_path / "silent.onnx", [1, 3, HW, HW], outputs={"output0": a[None]})
    s = run_cli(capsys, tmp_path / "o", data, "--model", m)
    bbox = s["models"][0]["metrics"]["bbox"]
    assert bbox["mAP50"] == 0.0 and bbox["mAP50_95"] == 0.0 and bbox["AR100"] == 0.0
    assert json.loads((tmp_path / "o" / "predictions" / "silent.json").read_text()) == []
    assert s["models"][0]["num_predictions"] == 0
