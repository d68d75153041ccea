"""``--metric edgefirst`` (edgefirst-validator 6.0.9 reading): hand-derived cases, next to compat's number.

Facts used in the derivations. edgefirst AP: knots ``mrec = [0, R..., 1]``, ``mpre = [1, P..., 0]``, envelope
= running max from the right, sampled by ``np.interp`` at x = 0, 0.01, ..., 1 and integrated by trapezoids
(0.01 wide). At an x equal to a repeated knot, ``np.interp`` returns the value of the LAST of the equal
knots, and at x = 1 the last knot's value (0). Between the last recall reached R_last and 1 the sampled curve
is the straight line from (R_last, P_env_last) to (1, 0), so a class stopping at recall 0.5 with precision 1
scores 0.5 + 0.5 * 1 / 2 = 0.75 (compat, which drops to 0 at R_last: 0.495), and a class at recall 1 with
precision 1 scores 0.99 + 0.01 * (1 + 0) / 2 = 0.995 (as compat).

All boxes below are 10 px high and on the same rows, so a box IoU is (x overlap) / (x union) of the widths.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.coco_cases import det as _det
from tests.coco_cases import gt as _gt
from validator.metrics import evaluate_compat
from validator.metrics.compat import ap_101
from validator.metrics.edgefirst import IOU_THRESHOLDS, ap_edgefirst, evaluate_edgefirst, match_by_iou

TOL = 1e-12


def _ann(i: int, img: int, cat: int, box: list[float], crowd: int = 0) -> dict:
    x, y, w, h = box
    return {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": w * h, "iscrowd": crowd,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}  # fmt: skip


# ------------------------------------------------------------------------------------------ matching
def test_match_by_iou_detection_order_beats_iou():
    # Rows: detections in rank order (d0 has the higher score); one target. d0 IoU .8, d1 IoU .9.
    # Both propose the target; it goes to the first in detection order, d0, at every t d0 reaches
    # (.50 ... .80, 7 thresholds; .8 >= .80 counts). From .85 on d0 is not eligible, so d1 gets it
    # (.85, .90), and at .95 nobody. (A highest-IoU-wins rule would give it to d1 everywhere.)
    tp = match_by_iou(np.array([[0.8], [0.9]]))
    assert tp.shape == (2, 10)
    assert tp[0].tolist() == [True] * 7 + [False] * 3
    assert tp[1].tolist() == [False] * 7 + [True] * 2 + [False]


def test_match_by_iou_no_fallback_to_second_target():
    # d0: .9 with g0. d1: .8 with g0 (its best), .7 with g1. g0 goes to d0; d1 does not fall back to the
    # free g1: FP everywhere, g1 stays unmatched. (Compat's confidence-ordered rule gives d1 -> g1 up to .70.)
    tp = match_by_iou(np.array([[0.9, 0.0], [0.8, 0.7]]))
    assert tp[0].tolist() == [True] * 9 + [False]
    assert not tp[1].any()


def test_match_by_iou_ties_and_edges():
    # d0 has .6 with both targets: it proposes the higher target index (g1), so d1, whose only target is
    # g1, finds it taken -> FP; g0 stays unmatched.
    tp = match_by_iou(np.array([[0.6, 0.6], [0.0, 0.6]]))
    assert tp[:, 0].tolist() == [True, False]
    # IoU exactly at a threshold counts (>=); empty inputs give empty or all-False tables.
    assert match_by_iou(np.array([[0.5]]))[0].tolist() == [True] + [False] * 9
    assert not match_by_iou(np.zeros((3, 0))).any() and match_by_iou(np.zeros((3, 0))).shape == (3, 10)
    assert match_by_iou(np.zeros((0, 2))).shape == (0, 10)
    assert IOU_THRESHOLDS[3] == 0.65  # the literal list, not linspace's 0.6499999999999999


# -------------------------------------------------------------------------------------------------- AP
def test_ap_closure_runs_to_recall_one():
    # Perfect: mrec [0, 1, 1], envelope [1, 1, 0]: 1 for x <= .99, 0 at x = 1 -> .99 + .005.
    assert ap_edgefirst(np.array([1.0]), np.array([1.0])) == pytest.approx(0.995, abs=TOL)
    # Recall .5 at precision 1: 1 on [0, .5], then the line to (1, 0): .5 + .25 = .75 (compat: .495).
    assert ap_edgefirst(np.array([0.5]), np.array([1.0])) == pytest.approx(0.75, abs=TOL)
    assert ap_101(np.array([0.5]), np.array([1.0])) == pytest.approx(0.495, abs=TOL)
    # TP then FP, recall .5: mrec [0, .5, .5, 1], envelope [1, 1, .5, 0]. x = 0 .. .49 -> 1; x = .5 -> .5
    # (last equal knot); then the line from (.5, .5) to (1, 0): .49 + .01 * (1 + .5) / 2 + .5 * .5 / 2
    # = .49 + .0075 + .125 = .6225.
    assert ap_edgefirst(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == pytest.approx(0.6225, abs=TOL)
    assert ap_edgefirst(np.array([]), np.array([])) == 0.0


def test_closure_end_to_end_differs_from_compat():
    # Two targets of class a, one exact detection: R = [.5], P = [1] at every threshold.
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [100, 0, 10, 10])])
    dets = [_det(1, 1, [0, 0, 10, 10], 0.9)]
    r = evaluate_edgefirst(gt, dets, "bbox")
    assert r.stats["mAP50"] == pytest.approx(0.75, abs=TOL)
    assert r.stats["mAP50_95"] == pytest.approx(0.75, abs=TOL)
    assert r.stats["mAP75"] == pytest.approx(0.75, abs=TOL)
    assert r.stats["AP_small"] is None and r.stats["AR100"] is None
    assert r.per_class[1] == {"AP50": pytest.approx(0.75, abs=TOL), "AP50_95": pytest.approx(0.75, abs=TOL),
                              "n_gt": 2}  # fmt: skip
    assert evaluate_compat(gt, dets, "bbox").stats["mAP50"] == pytest.approx(0.495, abs=TOL)


def test_iou_ordered_matching_end_to_end():
    # g0 = x[0, 10], g1 = x[2, 12]. d0 (.9) = x[2, 12]: IoU 1 with g1, 8/12 with g0. d1 (.8) = x[1.5, 11.5]:
    # 9.5/10.5 = .905 with g1 (its best), 8.5/11.5 = .739 with g0.
    # edgefirst: both propose g1, d0 (first) gets it; d1 is FP at every t (no fallback to g0). Per t:
    # R = [.5, .5], P = [1, .5] -> .6225 (see test_ap_closure_runs_to_recall_one), so mAP50 = mAP50-95.
    # compat: d1 takes the free g0 while .739 >= t (.50 ... .70): AP .995 there, .495 at .75 ... .95.
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [2, 0, 10, 10])])
    dets = [_det(1, 1, [2, 0, 10, 10], 0.9), _det(1, 1, [1.5, 0, 10, 10], 0.8)]
    r = evaluate_edgefirst(gt, dets, "bbox")
    assert r.stats["mAP50"] == pytest.approx(0.6225, abs=TOL)
    assert r.stats["mAP50_95"] == pytest.approx(0.6225, abs=TOL)
    c = evaluate_compat(gt, dets, "bbox")
    assert c.stats["mAP50"] == pytest.approx(0.995, abs=TOL)
    assert c.stats["mAP50_95"] == pytest.approx(0.745, abs=TOL)


def test_crowd_is_a_plain_miss():
    # g0 = x[0, 10], g1 = x[50, 60], crowd c = x[100, 110] (all class a). d0 (.9) on g0, d1 (.8) exactly on
    # the crowd, d2 (.7) on g1. Crowds do not exist here: n_gt = 2 and d1 is FP.
    # TP, FP, TP: R = [.5, .5, 1], P = [1, .5, 2/3]; mrec [0, .5, .5, 1, 1], envelope [1, 1, 2/3, 2/3, 0].
    # x = 0 .. .49 -> 1; x = .5 -> 2/3 (last equal knot); .51 .. .99 -> 2/3; x = 1 -> 0:
    # .49 + .01 * (1 + 2/3) / 2 + .49 * 2/3 + .01 * (2/3) / 2 = .49 + 1/120 + .98/3 + 1/300 = .828333...
    # (COCO ignores d1: 1.0.)
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [50, 0, 10, 10]), _ann(3, 1, 1, [100, 0, 10, 10], 1)])
    dets = [_det(1, 1, [0, 0, 10, 10], 0.9), _det(1, 1, [100, 0, 10, 10], 0.8), _det(1, 1, [50, 0, 10, 10], 0.7)]
    r = evaluate_edgefirst(gt, dets, "bbox")
    expected = 0.49 + 1 / 120 + 0.98 / 3 + 1 / 300
    assert r.stats["mAP50"] == pytest.approx(expected, abs=TOL)
    assert r.stats["mAP50_95"] == pytest.approx(expected, abs=TOL)
    assert r.per_class[1]["n_gt"] == 2


# --------------------------------------------------------------------------------------------- classes
def test_classes_without_targets_are_ignored_and_missed_classes_count_zero():
    # Class a: one target, one exact detection -> .995. Class b: no target, a confident detection that
    # overlaps a's target: ignored (no AP, no effect on a).
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10])])
    dets = [_det(1, 1, [0, 0, 10, 10], 0.5), _det(1, 3, [0, 0, 10, 10], 0.99)]
    r = evaluate_edgefirst(gt, dets, "bbox")
    assert r.stats["mAP50"] == pytest.approx(0.995, abs=TOL)
    assert r.per_class[3] == {"AP50": None, "AP50_95": None, "n_gt": 0}
    # Give b a target it never hits: b counts 0 -> (.995 + 0) / 2 = .4975.
    gt2 = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 3, [100, 0, 10, 10])])
    r2 = evaluate_edgefirst(gt2, dets, "bbox")
    assert r2.stats["mAP50"] == pytest.approx(0.4975, abs=TOL)
    assert r2.per_class[3]["AP50"] == 0.0 and r2.per_class[3]["n_gt"] == 1


def test_no_targets_at_all_gives_none():
    r = evaluate_edgefirst(_gt([]), [_det(1, 1, [0, 0, 10, 10], 0.5)], "bbox")
    assert r.stats["mAP50"] is None and r.stats["mAP50_95"] is None and r.mean_recall is None


# -------------------------------------------------------------------------------------------- recall
def test_mean_recall_at_the_f1_optimal_confidence():
    # Class a: 4 targets, detections .9 and .8, both exact (TP). Class b: 1 target, no detection.
    # a: P = 1 on the whole grid; R = 0 above .9, .25 -> .5 between .9 and .8, .5 below .8, so F1 = 2/3 on
    # x <= .8 and less above. b: P = R = F1 = 0. Mean F1 = 1/3 on the plateau x <= .8 (grid points 0 .. 799),
    # less above; the 101-point box filter (edge-padded) keeps 1/3 for windows inside the plateau and the
    # first maximum is x = 0. There: mean R = (.5 + 0) / 2, mean P = (1 + 0) / 2, F1 = (2/3 + 0) / 2.
    gt = _gt([_ann(i, 1, 1, [30 * i, 0, 10, 10]) for i in range(1, 5)] + [_ann(9, 1, 3, [0, 50, 10, 10])])
    dets = [_det(1, 1, [30, 0, 10, 10], 0.9), _det(1, 1, [60, 0, 10, 10], 0.8)]
    r = evaluate_edgefirst(gt, dets, "bbox")
    assert r.mean_recall == pytest.approx(0.25, abs=TOL)
    assert r.mean_precision == pytest.approx(0.5, abs=TOL)
    assert r.f1 == pytest.approx(1 / 3, abs=TOL)
    assert r.f1_conf == 0.0


def test_image_ids_restrict_targets_and_detections():
    # Image 1: a hit; image 2: a miss (target, no detection). Over both: R = [.5], P = [1] -> .75;
    # over image 1 only: perfect -> .995.
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 2, 1, [0, 0, 10, 10])], images=2)
    dets = [_det(1, 1, [0, 0, 10, 10], 0.9)]
    assert evaluate_edgefirst(gt, dets, "bbox").stats["mAP50"] == pytest.approx(0.75, abs=TOL)
    assert evaluate_edgefirst(gt, dets, "bbox", image_ids=[1]).stats["mAP50"] == pytest.approx(0.995, abs=TOL)
    with pytest.raises(ValueError):
        evaluate_edgefirst(gt, dets, "bbox", image_ids=[7])


# ---------------------------------------------------------------------------------------------- masks
def test_segm_iou_from_rle_masks():
    # Target: the square x, y in [10, 60) (polygon), 2500 px. Detection: the mask of its left 31 columns,
    # 1550 px, IoU .62: TP at .50, .55, .60 (AP .995 each), FP from .65 on (R = [0], P = [0]: envelope
    # [1, 0, 0] -> 0 everywhere, x = 0 taking the last equal knot). mAP50-95 = 3 * .995 / 10 = .2985.
    gt = _gt([_ann(1, 1, 1, [10, 10, 50, 50])], size=100)
    m = np.zeros((100, 100), dtype=np.uint8)
    m[10:60, 10:41] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    dets = [{"image_id": 1, "category_id": 1, "segmentation": rle, "bbox": [10, 10, 31, 50], "score": 0.9}]
    r = evaluate_edgefirst(gt, dets, "segm")
    assert r.stats["mAP50"] == pytest.approx(0.995, abs=TOL)
    assert r.stats["mAP50_95"] == pytest.approx(0.2985, abs=TOL)
    assert r.mean_recall == pytest.approx(1.0, abs=TOL)


# ------------------------------------------------------------------------- against the peer, if present
def test_against_edgefirst_validator_functions():
    """Random cases through edgefirst-validator's own compute_ap / match_predictions (dev venvs only)."""
    pytest.importorskip("edgefirst.validator")
    from edgefirst.validator.evaluators.detection import DetectionValidator
    from edgefirst.validator.metrics.data.stats import DetectionStats
    from edgefirst.validator.metrics.detection import compute_ap

    from validator.metrics.edgefirst import class_ap

    rng = np.random.default_rng(0)
    v = DetectionValidator.__new__(DetectionValidator)
    v.detection_stats = DetectionStats()
    for _ in range(300):
        n_gt, n_dt = rng.integers(1, 7), rng.integers(1, 9)
        iou = rng.random((n_gt, n_dt)) * (rng.random((n_gt, n_dt)) > 0.4)  # continuous: no exact ties
        g, d = rng.integers(0, 3, n_gt), rng.integers(0, 3, n_dt)
        theirs = v.match_predictions(pred_classes=d, true_classes=g, iou=iou.copy())
        ours = match_by_iou(np.where(d[:, None] == g[None, :], iou.T, 0.0))
        assert np.array_equal(ours, theirs)
        tp = rng.random(n_dt) < 0.6
        n = int(tp.sum()) + int(rng.integers(1, 4))
        tpc, fpc = np.cumsum(tp), np.cumsum(~tp)
        ap, _, _ = compute_ap(tpc / (n + 1e-16), tpc / (tpc + fpc))
        assert class_ap(np.linspace(1, 0.1, n_dt), tp[:, None], n)[0] == pytest.approx(ap, abs=TOL)
