"""Mean Recall at the F1-optimal confidence: hand-derived cases, directly and through COCO matching."""

from __future__ import annotations

import numpy as np
import pytest

from validator.metrics import Backend, evaluate, evaluate_compat
from validator.metrics.recall import ClassMatches, box_smooth, f1_operating_point

# The 2-class case, derived by hand. Grid x_j = j / 999.
#   Class A: 1 GT, one TP at score 0.5. R_A = P_A = 1 for x <= 0.5; above, R_A = 0 and P_A = 1 -> F1_A = 0.
#   Class B: 2 GT, a TP at 0.9 then an FP at 0.1. R_B = 1/2 on [0, 0.9]; P_B is 1 at 0.9 and 1/2 at 0.1,
#   linear in between: P_B(x) = 1/2 + (x - 0.1) * (1/2) / 0.8 = 1/2 + 5/8 (x - 0.1); F1_B = P_B / (P_B + 1/2).
#   Mean F1 y(x): 0.75 on [0, 0.1]; (1 + F1_B) / 2, strictly increasing, on (0.1, 0.5]; F1_B / 2 <= 1/3
#   on (0.5, 0.9]; 0 above 0.9. The first grid point above 0.5 is j = 500 (x_499 = .4995, x_500 = .5005).
#   Box filter of 101 points: S(j) - S(j-1) = (y[j+50] - y[j-51]) / 101 > 0 while j + 50 <= 499, and < 0 at
#   j = 450 (y[500] <= 1/3 < 0.75 <= y[399]); it keeps falling until the window leaves the high region and
#   later values are bounded by 1/3. So j* = 449, conf = 449/999, where
#   Mean Recall = (1 + 1/2) / 2 = 3/4, Mean Precision = (1 + P_B) / 2, F1 = (1 + F1_B) / 2.
X_STAR = 449 / 999
P_B = 0.5 + 5 / 8 * (X_STAR - 0.1)
F1_B = P_B / (P_B + 0.5)


def test_hand_case_direct():
    classes = {
        1: ClassMatches(np.array([0.5]), np.array([True]), 1),
        3: ClassMatches(np.array([0.9, 0.1]), np.array([True, False]), 2),
    }
    op = f1_operating_point(classes)
    assert op.conf == pytest.approx(X_STAR, abs=1e-12)
    assert op.recall == pytest.approx(0.75, abs=1e-12)
    assert op.precision == pytest.approx((1 + P_B) / 2, abs=1e-12)
    assert op.f1 == pytest.approx((1 + F1_B) / 2, abs=1e-12)
    assert op.class_recall == pytest.approx({1: 1.0, 3: 0.5})


def _gt_and_dets():
    def ann(i, cat, box):
        area = box[2] * box[3]
        return {"id": i, "image_id": 1, "category_id": cat, "bbox": box, "area": area, "iscrowd": 0}

    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
        "annotations": [
            ann(1, 1, [10, 10, 30, 30]),
            ann(2, 3, [50, 50, 30, 30]),
            ann(3, 3, [10, 60, 30, 30]),
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.5},
        {"image_id": 1, "category_id": 3, "bbox": [50, 50, 30, 30], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [85, 5, 10, 10], "score": 0.1},  # overlaps nothing: FP
    ]
    return gt, dets


@pytest.mark.parametrize("backend", [Backend.PYCOCOTOOLS, Backend.FASTER])
def test_hand_case_through_coco(backend):
    gt, dets = _gt_and_dets()
    r = evaluate(gt, dets, "bbox", backend=backend)
    assert r.f1_conf == pytest.approx(X_STAR, abs=1e-12)
    assert r.mean_recall == pytest.approx(0.75, abs=1e-12)
    assert r.mean_precision == pytest.approx((1 + P_B) / 2, abs=1e-12)
    assert r.f1 == pytest.approx((1 + F1_B) / 2, abs=1e-12)


def test_hand_case_through_compat():
    # Same matches in the compat reading (no crowds, no competing candidates): same operating point.
    gt, dets = _gt_and_dets()
    r = evaluate_compat(gt, dets, "bbox")
    assert (r.mean_recall, r.f1_conf) == pytest.approx((0.75, X_STAR), abs=1e-12)


def test_classes_without_gt_do_not_count_and_missing_ones_do():
    # Class 7 has detections but no GT: left out of every mean. Class 9 has GT but no detection: P = R = 0.
    # Class 1 alone: one TP at 0.8 -> F1 1 on [0, 0.8], 0 above; with class 9 the mean F1 is 1/2 there.
    # The plateau starts at x = 0 and every window centred in [0, 0.75] sees only 1/2 -> j* = 0 (first
    # argmax): Mean Recall = (1 + 0) / 2, Mean Precision = (1 + 0) / 2, F1 = 1/2, conf = 0.
    classes = {
        1: ClassMatches(np.array([0.8]), np.array([True]), 1),
        7: ClassMatches(np.array([0.99, 0.98]), np.array([False, False]), 0),
        9: ClassMatches(np.array([]), np.array([], dtype=bool), 4),
    }
    op = f1_operating_point(classes)
    assert (op.recall, op.precision, op.f1, op.conf) == (0.5, 0.5, 0.5, 0.0)
    assert f1_operating_point({7: classes[7]}) is None


def test_box_smooth_is_an_edge_padded_101_point_mean():
    # A unit step at index 600 of 1000 points: the smoothed value at i is the share of the window
    # [i-50, i+50] at or beyond 600, i.e. (i + 50 - 600 + 1) / 101 inside the ramp, 0 / 1 outside it.
    y = np.zeros(1000)
    y[600:] = 1.0
    s = box_smooth(y)
    assert s.shape == (1000,)
    assert s[549] == 0.0 and s[650] == pytest.approx(1.0)
    assert s[600] == pytest.approx(51 / 101)
    assert s[0] == 0.0 and s[999] == pytest.approx(1.0)  # edges padded with edge values, not zeros


def test_operating_point_at_a_given_confidence_by_hand():
    """One class, 4 GT, detections 0.9 TP, 0.8 TP, 0.6 FP, 0.3 TP. At confidence 0.7 (grid point 699/999)
    recall is 2/4 on both sides of it; precision runs linearly from 1 (at 0.8) to 2/3 (at 0.6)."""
    m = {1: ClassMatches(np.array([0.9, 0.8, 0.6, 0.3]), np.array([True, True, False, True]), 4)}
    op = f1_operating_point(m, at_conf=0.7)
    x = 699 / 999
    assert op.conf == pytest.approx(x)
    assert op.recall == pytest.approx(0.5)
    assert op.precision == pytest.approx(1 + (x - 0.8) / (0.6 - 0.8) * (2 / 3 - 1))
    assert f1_operating_point(m, at_conf=0.1).recall == pytest.approx(0.75)  # all four kept


def test_precision_above_the_top_score_is_one_and_recall_zero():
    """Above a class's top score nothing is kept: recall 0 and precision 1 by convention (np.interp's left=),
    not 0, which would pull the mean precision of any operating point above some class's scores down."""
    from validator.metrics.recall import class_curves

    grid = np.linspace(0.0, 1.0, 1000)
    p, r = class_curves(ClassMatches(np.array([0.5, 0.4]), np.array([True, False]), 2), grid)
    above = grid > 0.5
    assert (p[above] == 1.0).all() and (r[above] == 0.0).all()
    assert r[grid <= 0.4][-1] == pytest.approx(0.5) and p[grid <= 0.4][-1] == pytest.approx(0.5)


def test_a_given_confidence_reads_the_nearest_grid_point_not_the_one_below():
    """0.7007 lies 1e-6 below grid point 700 (0.700701) and 0.001 above point 699 (0.6997): the nearest is
    700. The class's detections (0.70035, 0.7003) sit between the two: above them recall is 0, below 1."""
    m = {1: ClassMatches(np.array([0.70035, 0.7003]), np.array([True, True]), 2)}
    op = f1_operating_point(m, at_conf=0.7007)
    assert op.conf == pytest.approx(700 / 999)
    assert op.recall == 0.0  # grid point 700 is above both detections
    assert f1_operating_point(m, at_conf=0.6997).recall == pytest.approx(1.0)  # point 699: both kept
