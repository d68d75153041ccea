"""Letterbox/stretch geometry and instance masks mapped back to the original image.

The mask tests use prototypes that are +1 on a band of 4-px cells and -1 elsewhere: linear
interpolation between neighbouring cell centres (+1, -1) crosses zero exactly on the cell edge, so the
mask on the canvas is that band (bands, not rectangles: at a rectangle's corners bilinear interpolation
rounds the zero set off), cut by the detection box; on the original image it is the letterbox-undone
image of both.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from validator.decode import masks as masks_mod
from validator.decode.geometry import Letterbox, boxes_to_original
from validator.decode.masks import masks_to_rles


# ---------------------------------------------------------------------------------------- geometry
def test_letterbox_fit_landscape():
    # 640x480 into 320x320: r = min(320/480, 320/640) = 0.5 -> 320x240, pad_y = (320-240)/2 = 40
    lb = Letterbox.fit((480, 640), (320, 320))
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y, lb.input_hw) == (0.5, 0.5, 0, 40, (320, 320))


def test_letterbox_fit_rounding_and_odd_padding():
    # 300x100 into 64x64: r = min(64/100, 64/300) = 0.2133 -> 64 x round(21.33) = 21, pad_y = (64-21)//2 = 21
    lb = Letterbox.fit((100, 300), (64, 64))
    assert (lb.pad_x, lb.pad_y) == (0, 21)
    assert lb.scale_x == pytest.approx(64 / 300) and lb.scale_y == pytest.approx(21 / 100)


def test_letterbox_stretch():
    lb = Letterbox.stretch((480, 640), (320, 320))
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (0.5, pytest.approx(2 / 3), 0, 0)


def test_boxes_to_original_letterbox():
    lb = Letterbox.fit((480, 640), (320, 320))
    boxes = np.array([[10, 50, 110, 90], [-10, 30, 400, 400]], np.float32)
    # x / 0.5; (y - 40) / 0.5; the second box is clipped to the 640x480 image
    expected = [[20, 20, 220, 100], [0, 0, 640, 480]]
    out = boxes_to_original(boxes, lb, (480, 640))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected)


def test_boxes_to_original_odd_padding():
    lb = Letterbox.fit((100, 300), (64, 64))
    # x: 32 / (64/300) = 150, 64 -> 300; y: (21 - 21) / 0.21 = 0, (42 - 21) / 0.21 = 100
    np.testing.assert_allclose(boxes_to_original(np.array([[32, 21, 64, 42]]), lb, (100, 300)),
                               [[150, 0, 300, 100]], rtol=1e-6)


def test_boxes_to_original_stretch():
    lb = Letterbox.stretch((480, 640), (320, 320))
    # x / 0.5; y / (2/3)
    np.testing.assert_allclose(boxes_to_original(np.array([[10, 20, 110, 200]]), lb, (480, 640)),
                               [[20, 30, 220, 300]], rtol=1e-6)


def test_boxes_to_original_empty():
    assert boxes_to_original(np.zeros((0, 4)), Letterbox.fit((10, 10), (32, 32)), (10, 10)).shape == (0, 4)


# ---------------------------------------------------------------------------------------- masks
ORIG = (120, 200)  # h, w
CANVAS = (64, 64)


def band_protos(axis: str):
    """nm=2 on a 16x16 grid (4-px cells). Proto 0 is +1 on cell columns u in [4,10) (axis "x": canvas
    x in (16, 40)) or cell rows v in [6,12) (axis "y": canvas y in (24, 48)), -1 elsewhere; proto 1 is
    all ones (given coefficient 0 below, it must not matter)."""
    p = np.full((2, 16, 16), -1.0, np.float32)
    if axis == "x":
        p[0, :, 4:10] = 1.0
    else:
        p[0, 6:12, :] = 1.0
    p[1] = 1.0
    return p


def decode_rle(rle):
    assert isinstance(rle["counts"], str) and rle["size"] == list(ORIG)
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def rect(rows, cols):
    """Boolean image that is True on rows[0]..rows[1], cols[0]..cols[1] (inclusive)."""
    m = np.zeros(ORIG, bool)
    m[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return m


def assert_rect(mask, rows, cols):
    """mask is the rectangle to one pixel: its interior all set, nothing beyond one pixel outside."""
    (r0, r1), (c0, c1) = rows, cols
    assert mask[r0 + 1:r1, c0 + 1:c1].all()
    outside = np.ones_like(mask)
    outside[max(r0 - 1, 0):r1 + 2, max(c0 - 1, 0):c1 + 2] = False
    assert not mask[outside].any()


# 200x120 into 64x64: r = min(64/120, 64/200) = 0.32 -> 64 x round(38.4) = 38,
# pad_x 0, pad_y = (64-38)//2 = 13
# canvas x in (16, 40) -> original (16/0.32, 40/0.32) = (50, 125): pixel columns 50..124 (centres inside)
# canvas y in (24, 48) -> original ((24-13)*120/38, (48-13)*120/38) = (34.7, 110.5): pixel rows 35..110
ROWS, COLS = (35, 110), (50, 124)


def test_mask_rectangle_through_letterbox():
    lb = Letterbox.fit(ORIG, CANVAS)
    assert (lb.pad_x, lb.pad_y) == (0, 13)
    coef = np.array([[1, 0]], np.float32)
    # rows from the prototypes (through pad_y and scale_y), columns from the box
    by_rows = masks_to_rles(band_protos("y"), coef, np.array([[16, 0, 40, 64]], np.float32), lb, ORIG)
    # columns from the prototypes, rows from the box
    by_cols = masks_to_rles(band_protos("x"), coef, np.array([[0, 24, 64, 48]], np.float32), lb, ORIG)
    for rles in (by_rows, by_cols):
        mask = decode_rle(rles[0])
        assert_rect(mask, ROWS, COLS)
        assert (mask == rect(ROWS, COLS)).all()  # and exactly, by the pixel-centre rule


def test_mask_cut_by_box_and_empty_box():
    lb = Letterbox.fit(ORIG, CANVAS)
    boxes = np.array([[0, 0, 64, 64],  # whole image: the full band, every row
                      [0, 0, 32, 64],  # original x < 100: the band cut at column 99
                      [0, 0, 64, 5]], np.float32)  # only padding: empty
    rles = masks_to_rles(band_protos("x"), np.array([[1, 0]] * 3, np.float32), boxes, lb, ORIG)
    full, cut, empty = (decode_rle(r) for r in rles)
    assert_rect(full, (0, 119), COLS)
    assert_rect(cut, (0, 119), (50, 99))
    assert not empty.any()


def test_mask_rectangle_through_stretch():
    lb = Letterbox.stretch(ORIG, CANVAS)
    # scale_x 0.32, scale_y 64/120: canvas y in (24, 48) -> original (45, 90): rows 45..89
    rles = masks_to_rles(band_protos("y"), np.array([[1, 0]], np.float32), np.array([[16, 0, 40, 64]]), lb,
                         ORIG)
    assert_rect(decode_rle(rles[0]), (45, 89), COLS)


def test_negative_coefficient_inverts_inside_box():
    lb = Letterbox.fit(ORIG, CANVAS)
    # logits = -proto0: positive left and right of the band; the box keeps original x, y in [0, 60)
    xs, ys = lb.to_input(np.array([0.0, 60.0]), np.array([0.0, 60.0]))
    boxes = np.array([[xs[0], ys[0], xs[1], ys[1]]], np.float32)
    mask = decode_rle(masks_to_rles(band_protos("x"), np.array([[-1, 0]], np.float32), boxes, lb, ORIG)[0])
    assert_rect(mask, (0, 59), (0, 49))


def test_no_detections():
    assert masks_to_rles(band_protos("x"), np.zeros((0, 2), np.float32), np.zeros((0, 4)),
                         Letterbox.fit(ORIG, CANVAS), ORIG) == []


def test_shape_errors():
    with pytest.raises(ValueError):
        masks_to_rles(band_protos("x"), np.zeros((1, 3), np.float32), np.zeros((1, 4)),
                      Letterbox.fit(ORIG, CANVAS), ORIG)


def reference_masks(protos, coefs, boxes_orig, lb, hw):
    """Full-image reference: every prototype resampled to every original pixel, then the product."""
    nm, ph, pw = protos.shape
    h, w = hw
    cell_y, cell_x = lb.input_hw[0] / ph, lb.input_hw[1] / pw
    ys = ((np.arange(h) + 0.5) * lb.scale_y + lb.pad_y) / cell_y - 0.5
    xs = ((np.arange(w) + 0.5) * lb.scale_x + lb.pad_x) / cell_x - 0.5
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    ya, yb = np.clip(y0, 0, ph - 1), np.clip(y0 + 1, 0, ph - 1)
    xa, xb = np.clip(x0, 0, pw - 1), np.clip(x0 + 1, 0, pw - 1)
    full = (protos[:, ya][:, :, xa] * ((1 - fy)[:, None] * (1 - fx)[None])
            + protos[:, ya][:, :, xb] * ((1 - fy)[:, None] * fx[None])
            + protos[:, yb][:, :, xa] * (fy[:, None] * (1 - fx)[None])
            + protos[:, yb][:, :, xb] * (fy[:, None] * fx[None]))  # (nm, h, w)
    logits = np.tensordot(coefs.astype(np.float64), full, axes=1)  # (n, h, w)
    cy, cx = np.arange(h)[:, None] + 0.5, np.arange(w)[None] + 0.5
    out = []
    for (x1, y1, x2, y2), lg in zip(boxes_orig, logits, strict=True):
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        out.append((lg > 0) & inside)
    return np.array(out), logits


@pytest.mark.parametrize("mode", ["fit", "stretch"])
def test_matches_full_image_reference(mode):
    rng = np.random.default_rng(7)
    hw, canvas = (75, 131), (96, 128)
    lb = getattr(Letterbox, mode)(hw, canvas)
    protos = rng.normal(size=(8, 24, 32)).astype(np.float32)
    coefs = rng.normal(size=(12, 8)).astype(np.float32)
    xy = rng.uniform(-10, 130, (12, 2))
    wh = rng.uniform(2, 90, (12, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    want, logits = reference_masks(protos, coefs, boxes_to_original(boxes, lb, hw), lb, hw)
    got = np.array([mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()})
                    for r in masks_to_rles(protos, coefs, boxes, lb, hw)]).astype(bool)
    differ = got != want
    assert not (differ & (np.abs(logits) > 1e-4)).any()  # only float ties at the zero crossing may differ
    assert want.any(axis=(1, 2)).sum() >= 8  # the case is not trivially empty


def test_batches_reuse_the_buffer(monkeypatch):
    rng = np.random.default_rng(3)
    lb = Letterbox.fit(ORIG, CANVAS)
    protos = rng.normal(size=(4, 16, 16)).astype(np.float32)
    coefs = rng.normal(size=(9, 4)).astype(np.float32)
    xy = rng.uniform(0, 64, (9, 2))
    boxes = np.concatenate([xy - 15, xy + 15], 1).astype(np.float32)
    one_batch = masks_to_rles(protos, coefs, boxes, lb, ORIG)
    monkeypatch.setattr(masks_mod, "MAX_BATCH", 2)
    assert masks_to_rles(protos, coefs, boxes, lb, ORIG) == one_batch


def test_100_masks_on_640x480():
    """One RLE per detection at full size (speed: ``benchmarks/run.py --only masks``)."""
    rng = np.random.default_rng(0)
    lb = Letterbox.fit((480, 640), (640, 640))
    protos = rng.normal(size=(32, 160, 160)).astype(np.float32)
    coefs = rng.normal(size=(100, 32)).astype(np.float32)
    xy = rng.uniform(0, 640, (100, 2))
    wh = rng.uniform(10, 200, (100, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    rles = masks_to_rles(protos, coefs, boxes, lb, (480, 640))
    assert len(rles) == 100
    assert all(r["size"] == [480, 640] for r in rles)
