"""YOLO (monolithic, split, end-to-end) and SSD decoding of hand-built outputs with known detections.

The YOLO outputs are a 256x256 head (1344 anchors, 3 classes) that is all zeros except a few anchors:
  anchor 5:   cx,cy,w,h = 100, 50, 20, 10   -> xyxy  90, 45, 110,  55; scores (0.125, 0.875, 0.25)
  anchor 700: cx,cy,w,h = 200, 150, 40, 60  -> xyxy 180, 120, 220, 180; scores (0.75, 0, 0)
  anchor 701: cx,cy,w,h = 201, 150, 40, 60  -> xyxy 181, 120, 221, 180; scores (0.625, 0, 0)
Anchors 700 and 701: intersection 39*60 = 2340, union 2*2400 - 2340 = 2460, IoU 0.951 (> 0.7).
Scores are multiples of 1/8 so float32 holds them exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from validator.decode import decode as decode_any
from validator.decode.contract import TensorSpec, identify
from validator.decode.ssd import decode as decode_ssd
from validator.decode.yolo import RawDetections, decode

HW = (256, 256)
N = 1344
NC = 3
NM = 32
A5 = ([90, 45, 110, 55], 1, 0.875)
A700 = ([180, 120, 220, 180], 0, 0.75)


def head(masks=False, duplicate_class=0):
    """[4+NC(+NM), N] channels-first head output (no batch dim)."""
    a = np.zeros((4 + NC + (NM if masks else 0), N), np.float32)
    a[:4, 5], a[4:7, 5] = (100, 50, 20, 10), (0.125, 0.875, 0.25)
    a[:4, 700], a[4, 700] = (200, 150, 40, 60), 0.75
    a[:4, 701], a[4 + duplicate_class, 701] = (201, 150, 40, 60), 0.625
    if masks:
        a[7:, 5] = np.arange(NM) / NM
        a[7:, 700] = -np.arange(NM)
        a[7:, 701] = 7.0
    return a


def contract_for(*shapes, **kw):
    return identify([TensorSpec(f"t{i}", s, "float32") for i, s in enumerate(shapes)], HW, **kw)


def check(det: RawDetections, expected):
    boxes, classes, scores = zip(*expected, strict=True) if expected else ((), (), ())
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.classes.dtype == np.int64
    np.testing.assert_allclose(det.boxes, np.array(boxes, np.float32).reshape(-1, 4), atol=1e-4)
    assert det.classes.tolist() == list(classes)
    np.testing.assert_allclose(det.scores, scores)


# ---------------------------------------------------------------------------------------- monolithic
def test_monolithic_pixels():
    c = contract_for((1, 7, N))
    det = decode(c, {"t0": head()[None]}, HW)
    check(det, [A5, A700])  # anchor 701 suppressed by 700 (same class, IoU 0.95)
    assert det.coefs is None and det.protos is None


def test_monolithic_transposed():
    c = contract_for((1, N, 7))
    check(decode(c, {"t0": head().T[None].copy()}, HW), [A5, A700])


def test_monolithic_normalized_and_auto():
    a = head()
    a[[0, 2]] /= 256
    a[[1, 3]] /= 256
    c = contract_for((1, 7, N))
    check(decode(c, {"t0": a[None]}, HW, box_units="normalized"), [A5, A700])
    check(decode(c, {"t0": a[None]}, HW, box_units="auto"), [A5, A700])
    check(decode(c, {"t0": head()[None]}, HW, box_units="auto"), [A5, A700])


def test_normalized_non_square_scales_x_by_width():
    hw = (256, 320)  # 1680 anchors; x normalised by 320, y by 256
    a = np.zeros((7, 1680), np.float32)
    a[:4, 3], a[5, 3] = (0.5, 0.25, 0.125, 0.0625), 0.5
    c = identify([TensorSpec("o", (1, 7, 1680), "float32")], hw)
    det = decode(c, {"o": a[None]}, hw, box_units="normalized")
    # cx 160, cy 64, w 40, h 16
    check(det, [([140, 56, 180, 72], 1, 0.5)])


def test_conf_is_strict_and_filters_before_nms():
    c = contract_for((1, 7, N))
    check(decode(c, {"t0": head()[None]}, HW, conf=0.75), [A5])
    check(decode(c, {"t0": head()[None]}, HW, conf=0.875), [])


def test_class_aware_agnostic_and_max_det():
    c = contract_for((1, 7, N))
    out = {"t0": head(duplicate_class=2)[None]}
    a701 = ([181, 120, 221, 180], 2, 0.625)
    check(decode(c, out, HW), [A5, A700, a701])  # other class: not suppressed
    check(decode(c, out, HW, agnostic=True), [A5, A700])
    check(decode(c, out, HW, max_det=1), [A5])
    check(decode(c, out, HW, iou=0.96), [A5, A700, a701])


def test_max_candidates_keeps_the_best():
    c = contract_for((1, 7, N))
    check(decode(c, {"t0": head()[None]}, HW, max_candidates=1), [A5])


def test_multi_label():
    c = contract_for((1, 7, N))
    det = decode(c, {"t0": head()[None]}, HW, conf=0.2, multi_label=True)
    # anchor 5 yields class 1 (0.875) and class 2 (0.25); different classes do not suppress each other
    check(det, [A5, A700, ([90, 45, 110, 55], 2, 0.25)])
    check(decode(c, {"t0": head()[None]}, HW, conf=0.2), [A5, A700])


def test_nothing_above_conf():
    c = contract_for((1, 39, N), (1, NM, 64, 64))
    det = decode(c, {"t0": np.zeros((1, 39, N), np.float32), "t1": np.ones((1, NM, 64, 64), np.float32)}, HW)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.coefs.shape == (0, NM)
    assert det.protos.shape == (NM, 64, 64)


# ---------------------------------------------------------------------------------------- seg
@pytest.mark.parametrize("nhwc", [False, True])
def test_monolithic_seg_carries_coefs_and_protos(nhwc):
    protos = np.random.default_rng(0).normal(size=(NM, 64, 64)).astype(np.float32)
    shape = (1, 64, 64, NM) if nhwc else (1, NM, 64, 64)
    c = contract_for((1, 39, N), shape)
    p = protos.transpose(1, 2, 0)[None] if nhwc else protos[None]
    det = decode(c, {"t0": head(masks=True)[None], "t1": p}, HW)
    check(det, [A5, A700])
    np.testing.assert_array_equal(det.coefs[0], np.arange(NM) / NM)
    np.testing.assert_array_equal(det.coefs[1], -np.arange(NM))
    np.testing.assert_array_equal(det.protos, protos)
    assert det.protos.flags.c_contiguous


# ---------------------------------------------------------------------------------------- split
@pytest.mark.parametrize("transposed", [False, True])
def test_split_seg(transposed):
    a = head(masks=True)
    parts = {"b": a[:4], "s": a[4:7], "c": a[7:]}
    if transposed:
        parts = {k: v.T for k, v in parts.items()}
    outs = {k: v[None].copy() for k, v in parts.items()}
    outs["p"] = np.zeros((1, NM, 64, 64), np.float32)
    c = identify([TensorSpec(k, v.shape, "float32") for k, v in outs.items()], HW)
    det = decode(c, outs, HW)
    check(det, [A5, A700])
    np.testing.assert_array_equal(det.coefs[1], -np.arange(NM))


def test_split_normalized_boxes():
    a = head()
    outs = {"b": (a[:4] / 256)[None], "s": a[4:7][None]}
    c = identify([TensorSpec(k, v.shape, "float32") for k, v in outs.items()], HW)
    check(decode(c, outs, HW, box_units="normalized"), [A5, A700])


# ---------------------------------------------------------------------------------------- end2end
def e2e_rows(normalized=False, masks=False):
    rows = np.zeros((1, 5, 6 + (NM if masks else 0)), np.float32)
    rows[0, 0, :6] = (10, 20, 30, 40, 0.5, 2)
    rows[0, 2, :6] = (50, 60, 70, 80, 0.875, 1)
    if masks:
        rows[0, 0, 6:], rows[0, 2, 6:] = 1.0, 2.0
    if normalized:
        rows[0, :, :4] /= 256
    return rows


def test_end2end():
    c = contract_for((1, 5, 6))
    expected = [([50, 60, 70, 80], 1, 0.875), ([10, 20, 30, 40], 2, 0.5)]
    check(decode(c, {"t0": e2e_rows()}, HW), expected)
    check(decode(c, {"t0": e2e_rows(normalized=True)}, HW, box_units="normalized"), expected)
    check(decode(c, {"t0": e2e_rows()}, HW, max_det=1), expected[:1])
    check(decode(c, {"t0": e2e_rows()}, HW, conf=0.5), expected[:1])
    check(decode(c, {"t0": np.zeros((1, 5, 6), np.float32)}, HW, box_units="auto"), [])


def test_end2end_seg():
    c = contract_for((1, 5, 38), (1, NM, 64, 64))
    det = decode(c, {"t0": e2e_rows(masks=True), "t1": np.zeros((1, NM, 64, 64), np.float32)}, HW)
    assert det.coefs.shape == (2, NM)
    assert det.coefs[:, 0].tolist() == [2.0, 1.0]


# ---------------------------------------------------------------------------------------- ssd
SSD_HW = (200, 300)  # h, w


def ssd_outputs(swap_values=False):
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, 0] = (0.1, 0.2, 0.5, 0.6)  # ymin xmin ymax xmax -> x 60..180, y 20..100
    boxes[0, 1] = (0.5, 0.5, 1.0, 1.0)  # -> x 150..300, y 100..200
    boxes[0, 2] = (0.0, 0.0, 1.0, 1.0)  # beyond the count: ignored whatever its score
    classes = np.array([[3, 0, 1, 0, 0]], np.float32)
    scores = np.array([[0.5, 0.75, 0.99, 0, 0]], np.float32)
    out = {"boxes": boxes, "classes": classes, "scores": scores, "count": np.array([2.0], np.float32)}
    if swap_values:
        out["classes"], out["scores"] = scores, classes
    return out


def ssd_contract():
    outs = ssd_outputs()
    return identify([TensorSpec(k, v.shape, "float32") for k, v in outs.items()], SSD_HW)


def test_ssd():
    c = ssd_contract()
    expected = [([150, 100, 300, 200], 0, 0.75), ([60, 20, 180, 100], 3, 0.5)]
    check(decode_ssd(c, ssd_outputs(), SSD_HW), expected)
    check(decode_ssd(c, ssd_outputs(), SSD_HW, max_det=1), expected[:1])
    check(decode_ssd(c, ssd_outputs(), SSD_HW, conf=0.5), expected[:1])
    check(decode_any(c, ssd_outputs(), SSD_HW), expected)  # dispatcher: contract units (normalized)


def test_ssd_class_offset():
    c = dataclasses.replace(ssd_contract(), class_offset=1)
    assert decode_ssd(c, ssd_outputs(), SSD_HW).classes.tolist() == [1, 4]


def test_ssd_roles_corrected_from_values():
    """Same-shape float classes/scores: a provisional role assignment is fixed by the values."""
    c = ssd_contract()
    roles = {**c.roles, "classes": c.roles["scores"], "scores": c.roles["classes"]}
    swapped = dataclasses.replace(c, roles=roles)
    expected = [([150, 100, 300, 200], 0, 0.75), ([60, 20, 180, 100], 3, 0.5)]
    check(decode_ssd(swapped, ssd_outputs(), SSD_HW), expected)


def test_ssd_count_zero():
    out = ssd_outputs()
    out["count"] = np.array([0.0], np.float32)
    assert len(decode_ssd(ssd_contract(), out, SSD_HW)) == 0


def test_yolo_decoder_refuses_ssd():
    with pytest.raises(ValueError):
        decode(ssd_contract(), ssd_outputs(), SSD_HW)
