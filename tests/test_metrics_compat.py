"""``--metric compat`` (Ultralytics-style reading): hand-derived cases, each shown next to COCO's number.

Facts used in the derivations: the compat AP samples the envelope at x = 0, 0.01, ..., 1 and integrates by
trapezoids; at x = 1 the sentinel (1, 0) gives 0, so a class at recall 1 with precision 1 scores
0.99 + 0.01 * (1 + 0) / 2 = 0.995. COCO's AP is the mean of the envelope at the same 101 recall values, with
precision 0 beyond the last recall reached. Cases avoid recall values that fall on the 0.01 grid at a
precision drop, so no answer depends on how np.interp treats repeated x values there.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from validator.datasets.shapes import ShapesConfig, generate
from validator.metrics import Backend, Metric, evaluate, evaluate_compat
from validator.metrics.compat import ap_101, greedy_by_iou

BACKENDS = [Backend.PYCOCOTOOLS, Backend.FASTER]
TOL = 1e-12  # pycocotools' precision can sit one ulp below 1 (tp / (tp + fp + eps))


def _ann(i: int, img: int, cat: int, box: list[float], crowd: int = 0) -> dict:
    area = box[2] * box[3]
    return {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": area, "iscrowd": crowd}


def _det(img: int, cat: int, box: list[float], score: float) -> dict:
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


def _gt(anns: list[dict], images: int = 1, size: int = 200) -> dict:
    return {
        "images": [{"id": i, "width": size, "height": size} for i in range(1, images + 1)],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
        "annotations": anns,
    }


def test_greedy_by_iou_prefers_overlap_to_score():
    # Rows are detections by descending score. d0: IoU .6 with g0, .55 with g1; d1: .9 with g0.
    # By IoU: (d1, g0) .9 first; (d0, g0) .6 is blocked (g0 used); (d0, g1) .55 taken -> [.55, .9].
    # (COCO's score order would give d0 -> g0 and leave d1 unmatched.)
    iou = np.array([[0.6, 0.55], [0.9, 0.0]])
    assert greedy_by_iou(iou, 0.5).tolist() == [0.55, 0.9]
    # At 0.6 the same pass stops before .55: d0 unmatched, which the "matched IoU >= t" reading gives too.
    assert greedy_by_iou(iou, 0.6).tolist() == [0.0, 0.9]


def test_ap_101_endpoint():
    # Perfect: envelope 1 up to recall 1, sentinel 0 at x = 1 -> 0.99 + 0.005.
    assert ap_101(np.array([1.0]), np.array([1.0])) == pytest.approx(0.995, abs=TOL)
    # Stops at recall 0.5 with precision 1: 1 on [0, .5], then the straight ramp from (.5, 1) to (1, 0); the
    # knots lie on the grid, so the trapezoids are exact: .5 * 1 + .5 * 1 / 2 = 0.75.
    assert ap_101(np.array([0.5]), np.array([1.0])) == pytest.approx(0.75, abs=TOL)


# Boxes 10 px tall on the same rows, so IoU is the 1-D overlap / union along x:
#   g1 = [0, 10], g2 = [5, 15]; d1 = [2, 12] (score .9), d2 = [0, 10] (score .8).
#   IoU(d1, g1) = 8/12 = .667, IoU(d1, g2) = 7/13 = .538, IoU(d2, g1) = 1, IoU(d2, g2) = 5/15 = .333.
ORDER_GT = _gt([_ann(1, 1, 1, [0, 0, 10, 10]), _ann(2, 1, 1, [5, 0, 10, 10])])
ORDER_DETS = [_det(1, 1, [2, 0, 10, 10], 0.9), _det(1, 1, [0, 0, 10, 10], 0.8)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iou_order_vs_score_order(backend):
    # COCO at IoU .5, by score: d1 takes its best GT g1 (.667 > .538); d2's only candidate g1 is taken (g2 is
    # .333) -> TP, FP: recall .5, .5; precision 1, .5. Envelope 1 for recall <= .5, nothing beyond:
    # 51 of 101 recall thresholds (0, .01, ..., .50) -> AP50 = 51/101.
    coco = evaluate(ORDER_GT, ORDER_DETS, "bbox", backend=backend)
    assert coco.per_class[1]["AP50"] == pytest.approx(51 / 101, abs=TOL)
    # Compat, by IoU: (d2, g1) = 1 first, (d1, g1) blocked, (d1, g2) = .538 -> both TP: recall .5, 1 with
    # precision 1 -> 0.995.
    compat = evaluate_compat(ORDER_GT, ORDER_DETS, "bbox")
    assert compat.per_class[1]["AP50"] == pytest.approx(0.995, abs=TOL)
    assert compat.stats["mAP50"] == pytest.approx(0.995, abs=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recall_endpoint(backend):
    # Two GT, one perfect detection: recall stops at .5 with precision 1, at every IoU threshold.
    # COCO: 51/101 (as above). Compat: 1 on [0, .5] plus the ramp to (1, 0) -> 0.75.
    gt = _gt([_ann(1, 1, 1, [0, 0, 40, 40]), _ann(2, 1, 1, [100, 100, 40, 40])])
    dets = [_det(1, 1, [0, 0, 40, 40], 0.9)]
    assert evaluate(gt, dets, "bbox", backend=backend).stats["mAP50_95"] == pytest.approx(51 / 101, abs=TOL)
    compat = evaluate_compat(gt, dets, "bbox")
    assert compat.stats["mAP50_95"] == pytest.approx(0.75, abs=TOL)
    assert compat.stats["AP_small"] is None and compat.stats["AR100"] is None  # not defined in compat
    assert compat.metric is Metric.COMPAT


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
