"""``--metric compat`` (Ultralytics 8.4.190 ``val`` reading): hand-derived cases, each next to COCO's number.

Facts used in the derivations. Compat AP: knots ``mrec = [0, R..., R_last, 1]``, ``mpre = [1, P..., 0, 0]``,
envelope = running max from the right, sampled by ``np.interp`` at x = 0, 0.01, ..., 1 and integrated by
trapezoids (0.01 wide). At an x equal to a repeated knot, ``np.interp`` returns the value of the LAST of the
equal knots; the repeated R_last carries 0, so the sampled curve is 0 from x = R_last on (x >= R_last), and
linear between knots before. So a class at recall 1 with precision 1 scores 0.99 * 1 + 0.01 * (1 + 0) / 2 =
0.995; one stopping at recall 0.5 with precision 1 scores 0.49 + 0.005 = 0.495. COCO's AP is the mean of the
envelope at the same 101 recall values (a step function, precision 0 beyond the last recall reached).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.coco_cases import det as _det
from tests.coco_cases import gt as _gt
from validator.datasets.shapes import ShapesConfig, generate
from validator.metrics import Backend, Metric, evaluate, evaluate_compat
from validator.metrics.compat import IOU_THRESHOLDS, ap_101, match_by_confidence

BACKENDS = [Backend.PYCOCOTOOLS, Backend.FASTER]
TOL = 1e-12  # pycocotools' precision can sit one ulp below 1 (tp / (tp + fp + eps))


def _ann(i: int, img: int, cat: int, box: list[float], crowd: int = 0) -> dict:
    area = box[2] * box[3]
    return {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": area, "iscrowd": crowd}


def test_match_by_confidence_claims_per_threshold():
    # Rows: detections by descending confidence; columns: targets. Thresholds .50 .55 ... .95 (values here
    # avoid them). d0: IoU .62 with g0, .53 with g1; d1: .92 with g0.
    # t = .50, .55, .60: d0 (first) takes its best free target g0 (.62 >= t; not g1). d1: g0 is claimed, g1
    #   is 0 -> FP.
    # t = .65 ... .90: d0's best free target is g0 at .62 < t -> FP (it does not fall back to g1, .53 < t
    #   anyway), so g0 stays free and d1 takes it (.92 >= t).
    # t = .95: neither reaches it.
    # (The older IoU-ordered greedy gave d1 -> g0, d0 -> g1: d0 TP at .50 only.)
    iou = np.array([[0.62, 0.53], [0.92, 0.0]])
    tp = match_by_confidence(iou)
    assert tp.shape == (2, len(IOU_THRESHOLDS))
    assert tp[0].tolist() == [True] * 3 + [False] * 7
    assert tp[1].tolist() == [False] * 3 + [True] * 6 + [False]


def test_match_by_confidence_ties_and_edges():
    # Equal IoU with two free targets: the lower target index is claimed, the next detection gets the other.
    assert match_by_confidence(np.array([[0.8, 0.8], [0.8, 0.8]]))[:, 0].tolist() == [True, True]
    tp = match_by_confidence(np.array([[0.8, 0.8], [0.8, 0.0]]))
    assert tp[:, 0].tolist() == [True, False]  # d0 took g0 (first of the tie), so d1 finds only 0 left
    # IoU exactly at a threshold counts (>=); no targets / no detections give empty or all-False tables.
    assert match_by_confidence(np.array([[0.5]]))[0].tolist() == [True] + [False] * 9
    assert match_by_confidence(np.zeros((3, 0))).shape == (3, 10) and not match_by_confidence(np.zeros((3, 0))).any()
    assert match_by_confidence(np.zeros((0, 2))).shape == (0, 10)


def test_ap_101_endpoint():
    # Perfect: mrec [0, 1, 1, 1], envelope [1, 1, 0, 0]: 1 for x <= .99, 0 at x = 1 -> .99 + .005.
    assert ap_101(np.array([1.0]), np.array([1.0])) == pytest.approx(0.995, abs=TOL)
    # Stops at recall .5 with precision 1: mrec [0, .5, .5, 1], envelope [1, 1, 0, 0]. x = 0 .. .49 -> 1,
    # x = .5 -> 0 (last of the equal knots), x > .5 -> 0 (between (.5, 0) and (1, 0)):
    # 49 * .01 * 1 + .01 * (1 + 0) / 2 = .495. (The older definition ramped to (1, 0): .75; COCO: 51/101.)
    assert ap_101(np.array([0.5]), np.array([1.0])) == pytest.approx(0.495, abs=TOL)
    # Stops off the grid, at recall 1/3 with precision 1: x = 0 .. .33 -> 1 (< 1/3), x = .34 .. 1 -> 0:
    # 33 * .01 + .01 * (1 + 0) / 2 = .335.
    assert ap_101(np.array([1 / 3]), np.array([1.0])) == pytest.approx(0.335, abs=TOL)
    # TP, FP, TP over 2 targets: R = .5, .5, 1; P = 1, .5, 2/3. mrec [0, .5, .5, 1, 1, 1],
    # mpre [1, 1, .5, 2/3, 0, 0] -> envelope [1, 1, 2/3, 2/3, 0, 0]. x = 0 .. .49 -> 1; x = .5 -> 2/3 (last
    # .5 knot); .51 .. .99 -> 2/3 (flat to (1, 2/3)); x = 1 -> 0 (last knot). Trapezoids:
    # .49 + .01 * (1 + 2/3) / 2 + .49 * 2/3 + .01 * (2/3) / 2 = .49 + 1/120 + .98/3 + 1/300 = .8283...
    expected = 0.49 + 0.01 * (1 + 2 / 3) / 2 + 0.49 * 2 / 3 + 0.01 * (2 / 3) / 2
    assert ap_101(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(expected, abs=TOL)
    assert ap_101(np.array([]), np.array([])) == 0.0


# Boxes 10 px tall on the same rows, so IoU is the 1-D overlap / union along x:
#   g1 = [0, 10], g2 = [5, 15]; d1 = [2, 12] (score .9), d2 = [0, 10] (score .8).
#   IoU(d1, g1) = 8/12 = .667, IoU(d1, g2) = 7/13 = .538, IoU(d2, g1) = 1, IoU(d2, g2) = 5/15 = .333.
ORDER_GT = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [5, 0, 10, 10])])
ORDER_DETS = [_det(1, 1, [2, 0, 10, 10], 0.9), _det(1, 1, [0, 0, 10, 10], 0.8)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_confidence_order_matching(backend):
    # Both readings now match by confidence at IoU .5: d1 takes its best target g1 (.667 > .538); d2's only
    # candidate g1 is claimed (g2 is .333) -> TP, FP: recall .5, .5; precision 1, .5.
    # COCO: envelope 1 for recall <= .5, nothing beyond: 51 of 101 recall thresholds -> 51/101.
    coco = evaluate(ORDER_GT, ORDER_DETS, "bbox", backend=backend)
    assert coco.per_class[1]["AP50"] == pytest.approx(51 / 101, abs=TOL)
    # Compat: mrec [0, .5, .5, .5, 1], mpre [1, 1, .5, 0, 0] -> envelope [1, 1, .5, 0, 0]; x < .5 -> 1,
    # x = .5 -> 0 (last .5 knot), beyond 0: .49 + .005 = .495. (The older IoU-ordered greedy made both TP:
    # .995.)
    compat = evaluate_compat(ORDER_GT, ORDER_DETS, "bbox")
    assert compat.per_class[1]["AP50"] == pytest.approx(0.495, abs=TOL)
    assert compat.stats["mAP50"] == pytest.approx(0.495, abs=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recall_endpoint(backend):
    # Two GT, one perfect detection: recall stops at .5 with precision 1, at every IoU threshold.
    # COCO: 51/101 (as above). Compat: .495 (test_ap_101_endpoint).
    gt = _gt([_ann(1, 1, 1, [0, 0, 40, 40]), _ann(2, 1, 1, [100, 100, 40, 40])])
    dets = [_det(1, 1, [0, 0, 40, 40], 0.9)]
    assert evaluate(gt, dets, "bbox", backend=backend).stats["mAP50_95"] == pytest.approx(51 / 101, abs=TOL)
    compat = evaluate_compat(gt, dets, "bbox")
    assert compat.stats["mAP50_95"] == pytest.approx(0.495, abs=TOL)
    assert compat.stats["AP_small"] is None and compat.stats["AR100"] is None  # not defined in compat
    assert compat.metric is Metric.COMPAT


def test_threshold_claims_end_to_end():
    # Boxes 10 px tall on the same rows (IoU = 1-D overlap / union along x). g = [0, 10]; d1 = [0, 11]
    # (score .9): IoU 10/11 = .909; d2 = [0, 10] (score .8): IoU 1. Confidence order: d1 claims g wherever
    # .909 >= t (t = .50 ... .90: 9 thresholds), d2 is then an FP; at t = .95 d1 misses and d2 claims g.
    # t <= .90: TP, FP -> R = 1, 1; P = 1, .5 -> envelope 1 up to recall 1 -> .995.
    # t = .95: FP, TP -> R = 0, 1; P = 0, .5. mrec [0, 0, 1, 1, 1], mpre [1, 0, .5, 0, 0] -> envelope
    # [1, .5, .5, 0, 0]: x = 0 -> .5 (last of the 0 knots), .01 .. .99 -> .5, x = 1 -> 0:
    # .99 * .5 + .01 * .5 / 2 = .4975.
    # mAP50-95 = (9 * .995 + .4975) / 10 = .94525. (An IoU-first rule would give d2 the target everywhere:
    # FP, TP at every t -> .4975.)
    gt = _gt([_ann(1, 1, 1, [0, 0, 10, 10])])
    dets = [_det(1, 1, [0, 0, 11, 10], 0.9), _det(1, 1, [0, 0, 10, 10], 0.8)]
    compat = evaluate_compat(gt, dets, "bbox")
    assert compat.per_class[1]["AP50"] == pytest.approx(0.995, abs=TOL)
    assert compat.stats["mAP50_95"] == pytest.approx((9 * 0.995 + 0.4975) / 10, abs=TOL)


def test_class_without_targets_is_ignored():
    # Category 5 has no targets: its detections (even confident ones) change no AP and no P/R, and it has no
    # AP row; category 1's single exact detection -> .995, the mean is over category 1 only.
    gt = _gt([_ann(1, 1, 1, [0, 0, 40, 40])])
    gt["categories"].append({"id": 5, "name": "c"})
    base = evaluate_compat(gt, [_det(1, 1, [0, 0, 40, 40], 0.5)], "bbox")
    noisy = evaluate_compat(gt, [_det(1, 1, [0, 0, 40, 40], 0.5), _det(1, 5, [0, 0, 40, 40], 0.99),
                                 _det(1, 5, [100, 100, 20, 20], 0.98)], "bbox")  # fmt: skip
    for r in (base, noisy):
        assert r.stats["mAP50_95"] == pytest.approx(0.995, abs=TOL)
        assert r.per_class[5] == {"AP50": None, "AP50_95": None, "n_gt": 0}
        assert r.per_class[3]["AP50"] is None  # category 3: no targets, no detections
    assert (noisy.mean_recall, noisy.mean_precision) == (base.mean_recall, base.mean_precision)
    assert noisy.mean_recall == pytest.approx(1.0, abs=TOL)


# Class 1: g1 (img 1), g3, g4 and a crowd (img 2); class 3: g2 (img 1).
CROWD_GT = _gt(
    [_ann(1, 1, 1, [10, 10, 20, 20]), _ann(2, 1, 3, [50, 50, 40, 40]), _ann(3, 2, 1, [0, 0, 100, 100]),
     _ann(4, 2, 1, [0, 120, 60, 60]), _ann(5, 2, 1, [120, 120, 60, 60], crowd=1)],
    images=2,
)  # fmt: skip
CROWD_DETS = [_det(1, 1, [10, 10, 20, 20], 0.9), _det(2, 1, [0, 0, 100, 100], 0.8),
              _det(2, 1, [130, 130, 20, 20], 0.7),  # inside the crowd region
              _det(2, 1, [0, 120, 60, 60], 0.6), _det(1, 3, [50, 50, 40, 40], 0.5)]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_detection_on_crowd(backend):
    # COCO: the 0.7 detection lies inside the crowd (crowd IoU = intersection / detection area = 1), is
    # matched to it and ignored. All other detections are exact -> AP 1 for both classes, mAP 1.
    coco = evaluate(CROWD_GT, CROWD_DETS, "bbox", backend=backend)
    assert coco.stats["mAP50_95"] == pytest.approx(1.0, abs=TOL)
    # Compat: the crowd is dropped, so the 0.7 detection is an FP. Class 1 (3 GT) ranks TP, TP, FP, TP:
    # recall 1/3, 2/3, 2/3, 1; precision 1, 1, 2/3, 3/4. Envelope: 1 up to recall 2/3, then .75 to recall 1,
    # 0 at the sentinel. Grid: x = 0 .. .66 -> 1 (67 points), x = .67 .. .99 -> .75, x = 1 -> 0. Trapezoids:
    # 66 * .01 * 1 + .01 * (1 + .75) / 2 + 32 * .01 * .75 + .01 * (.75 + 0) / 2
    # = .66 + .00875 + .24 + .00375 = .9125, at every IoU (exact boxes). Class 3: perfect -> .995.
    compat = evaluate_compat(CROWD_GT, CROWD_DETS, "bbox")
    assert compat.per_class[1]["AP50_95"] == pytest.approx(0.9125, abs=TOL)
    assert compat.per_class[3]["AP50_95"] == pytest.approx(0.995, abs=TOL)
    assert compat.stats["mAP50_95"] == pytest.approx((0.9125 + 0.995) / 2, abs=TOL)
    assert compat.per_class[1]["n_gt"] == 3 and coco.per_class[1]["n_gt"] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_max_dets_cap(backend):
    # 150 GT boxes (10x10 on a 15 x 10 grid) of class 1 in one image, each found exactly, scores 1 - k/1000.
    # COCO keeps the 100 best: recall 2/3 at precision 1 -> AP = share of recall thresholds <= 2/3
    # (0 .. .66: 67 of 101) -> 67/101; AR100 = 2/3. Mean Recall: all-TP, so F1 grows as the confidence
    # drops and is flat below the 100th score: recall 2/3 there.
    # Compat counts all 150: recall 1 at precision 1 -> 0.995, Mean Recall 1.
    boxes = [[float(12 * (k % 15)), float(12 * (k // 15)), 10.0, 10.0] for k in range(150)]
    gt = _gt([_ann(k + 1, 1, 1, b) for k, b in enumerate(boxes)])
    dets = [_det(1, 1, b, 1.0 - k / 1000) for k, b in enumerate(boxes)]
    coco = evaluate(gt, dets, "bbox", backend=backend)
    assert coco.stats["mAP50_95"] == pytest.approx(67 / 101, abs=TOL)
    assert coco.stats["AR100"] == pytest.approx(2 / 3, abs=TOL)
    assert coco.mean_recall == pytest.approx(2 / 3, abs=TOL)
    compat = evaluate_compat(gt, dets, "bbox")
    assert compat.stats["mAP50_95"] == pytest.approx(0.995, abs=TOL)
    assert compat.mean_recall == pytest.approx(1.0, abs=TOL)


def test_empty_detections():
    compat = evaluate_compat(CROWD_GT, [], "bbox")
    assert (compat.stats["mAP50_95"], compat.stats["mAP50"], compat.stats["mAP75"]) == (0.0, 0.0, 0.0)
    assert compat.per_class == {
        1: {"AP50": 0.0, "AP50_95": 0.0, "n_gt": 3},
        3: {"AP50": 0.0, "AP50_95": 0.0, "n_gt": 1},
    }
    assert (compat.mean_recall, compat.mean_precision) == (0.0, 0.0)


def test_perfect_masks_on_shapes(tmp_path):
    # Each non-crowd GT's own mask as a detection: IoU 1 with its GT (visible regions do not overlap), every
    # class at recall 1 with precision 1 -> 0.995 at every threshold. Crowd regions are not GT here.
    gt = json.loads(generate(tmp_path, ShapesConfig(images=12, seed=5)).read_text())
    imgs = {i["id"]: i for i in gt["images"]}
    dets = []
    for k, a in enumerate(a for a in gt["annotations"] if not a["iscrowd"]):
        img = imgs[a["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], img["height"], img["width"]))
        seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        score = 1.0 - k * 1e-4
        dets.append(dict(image_id=a["image_id"], category_id=a["category_id"], segmentation=seg, score=score))
    r = evaluate_compat(gt, dets, "segm")
    counts = {c["id"]: 0 for c in gt["categories"]}
    for a in gt["annotations"]:
        counts[a["category_id"]] += 0 if a["iscrowd"] else 1
    assert {c: row["n_gt"] for c, row in r.per_class.items()} == counts
    assert all(row["AP50_95"] == pytest.approx(0.995, abs=TOL) for row in r.per_class.values() if row["n_gt"])
    assert r.stats["mAP50_95"] == pytest.approx(0.995, abs=TOL)
