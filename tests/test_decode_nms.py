"""NMS against a plainly written greedy reference, plus hand-made cases for classes, ties and limits."""

from __future__ import annotations

import numpy as np
import pytest

from validator.decode.nms import BLOCK, nms


def reference_nms(boxes, scores, thr, classes=None, agnostic=False, max_det=300):
    """The textbook loop: best first (ties by input index), drop what overlaps a kept box too much."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept = []
    for i in order:
        if len(kept) == max_det:
            break
        same = [k for k in kept if agnostic or classes is None or classes[k] == classes[i]]
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= thr for k in same):
            kept.append(i)
    return kept


def random_boxes(n, seed, clustered=False, nc=3):
    rng = np.random.default_rng(seed)
    if clustered:  # many near-duplicates around a few objects: suppression across blocks
        centres = rng.uniform(40, 600, (8, 2))
        sizes = rng.uniform(20, 150, (8, 2))
        k = rng.integers(0, 8, n)
        xy = centres[k] + rng.normal(0, 6, (n, 2))
        wh = sizes[k] * rng.uniform(0.8, 1.25, (n, 2))
    else:
        xy = rng.uniform(0, 640, (n, 2))
        wh = rng.uniform(4, 160, (n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, nc, n)


@pytest.mark.parametrize("n", [1, 2, 17, 300])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.7])
def test_matches_reference_uniform(n, thr):
    boxes, scores, classes = random_boxes(n, seed=n)
    for agnostic in (False, True):
        got = nms(boxes, scores, thr, classes, agnostic=agnostic)
        assert got.tolist() == reference_nms(boxes, scores, thr, classes, agnostic)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_clustered_many_blocks(seed):
    n = 4 * BLOCK + 37
    boxes, scores, classes = random_boxes(n, seed=seed, clustered=True)
    for agnostic, thr in ((False, 0.5), (True, 0.7)):
        got = nms(boxes, scores, thr, classes, agnostic=agnostic)
        want = reference_nms(boxes, scores, thr, classes, agnostic)
        assert got.tolist() == want
        assert 8 < len(want) < n  # the case really suppresses, and really keeps several


def test_max_det_truncates_the_full_result():
    boxes, scores, classes = random_boxes(500, seed=3, clustered=True)
    full = nms(boxes, scores, 0.5, classes, max_det=10_000)
    for m in (0, 1, 7, 50):
        assert nms(boxes, scores, 0.5, classes, max_det=m).tolist() == full[:m].tolist()
        assert nms(boxes, scores, 0.5, classes, max_det=m).tolist() == reference_nms(
            boxes, scores, 0.5, classes, max_det=m)


def test_empty_input():
    got = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert got.dtype == np.intp and got.shape == (0,)


def test_class_aware_vs_agnostic():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0])
    # boxes 0 and 1: inter 9*10 = 90, union 110, IoU 0.818
    assert nms(boxes, scores, 0.5, classes).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.5, classes, agnostic=True).tolist() == [0, 2]
    assert nms(boxes, scores, 0.5, None).tolist() == [0, 2]  # no classes: agnostic
    classes_same = np.array([1, 1, 1])
    assert nms(boxes, scores, 0.5, classes_same).tolist() == [0, 2]


def test_threshold_is_strict():
    # [0,0,4,1] and [0,0,2,1]: inter 2, union 4, IoU exactly 0.5
    boxes = np.array([[0, 0, 4, 1], [0, 0, 2, 1]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_ties_keep_input_order():
    same = np.array([[0, 0, 10, 10]] * 3, np.float32)
    assert nms(same, np.full(3, 0.5, np.float32), 0.5).tolist() == [0]
    apart = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], np.float32)
    scores = np.array([0.5, 0.9, 0.5, 0.9], np.float32)
    assert nms(apart, scores, 0.5).tolist() == [1, 3, 0, 2]
    # the tie decides which duplicate survives: the earlier one
    dup = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(dup, np.array([0.7, 0.7], np.float32), 0.5).tolist() == [0]
    assert nms(dup[::-1].copy(), np.array([0.7, 0.7], np.float32), 0.5).tolist() == [0]


def test_zero_area_boxes_never_suppress():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.1).tolist() == [0, 1, 2]


def test_bad_arguments():
    with pytest.raises(ValueError):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError):
        nms(np.zeros((1, 4)), np.zeros(1), 1.5)


def test_8400_candidates_keep_max_det():
    """Grid-anchored candidates like a 640x640 YOLO head (speed, and equality with the textbook loop on
    these candidates: ``benchmarks/run.py --only nms``)."""
    rng = np.random.default_rng(0)
    pts = []
    for s in (8, 16, 32):
        g = (np.arange(640 // s) + 0.5) * s
        gx, gy = np.meshgrid(g, g)
        pts.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], 1))
    p = np.concatenate(pts)
    wh = p[:, 2:3] * rng.uniform(1, 6, (len(p), 2))
    boxes = np.concatenate([p[:, :2] - wh / 2, p[:, :2] + wh / 2], 1).astype(np.float32)
    scores = rng.random(len(p)).astype(np.float32)
    classes = rng.integers(0, 80, len(p))
    assert len(boxes) == 8400
    keep = nms(boxes, scores, 0.7, classes)
    assert len(keep) == 300
