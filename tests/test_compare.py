"""compare.py: deltas in points (INT8 - float), per-class worst first, changed-image heuristic."""

from __future__ import annotations

import pytest

from validator.compare import changed_images, metric_deltas


def _m(map50, map5095, per_class):
    return {"bbox": {"mAP50": map50, "mAP50_95": map5095, "mean_recall": 0.5, "AR100": None, "AP_small": None,
                     "AP_medium": 0.2, "AP_large": 0.3, "per_class": per_class}}


def test_deltas_in_points_and_per_class_worst_first():
    f = _m(0.50, 0.30, {"1": {"name": "a", "n_gt": 3, "AP50": 0.6, "AP50_95": 0.4},
                        "4": {"name": "b", "n_gt": 2, "AP50": 0.4, "AP50_95": 0.2},
                        "9": {"name": "c", "n_gt": 0, "AP50": None, "AP50_95": None}})
    q = _m(0.47, 0.31, {"1": {"name": "a", "n_gt": 3, "AP50": 0.5, "AP50_95": 0.35},
                        "4": {"name": "b", "n_gt": 2, "AP50": 0.45, "AP50_95": 0.25},
                        "9": {"name": "c", "n_gt": 0, "AP50": None, "AP50_95": None}})
    d = metric_deltas(f, q)["bbox"]
    assert d["mAP50"] == pytest.approx(-3.0)
    assert d["mAP50_95"] == pytest.approx(1.0)
    assert d["mean_recall"] == 0.0
    assert d["AR100"] is None  # None on either side stays None, never 0
    assert [r["category_id"] for r in d["per_class"]] == [1, 4, 9]  # -5 pts, +5 pts, no GT last
    assert d["per_class"][0]["dAP50_95"] == pytest.approx(-5.0)
    assert d["per_class"][2]["dAP50_95"] is None


def _p(img, cat, box, score):
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


def test_changed_images():
    base = [_p(1, 1, [10, 10, 20, 20], 0.9), _p(2, 1, [0, 0, 10, 10], 0.8), _p(3, 2, [5, 5, 10, 10], 0.7),
            _p(4, 1, [0, 0, 10, 10], 0.9)]
    other = [
        _p(1, 1, [11, 10, 20, 20], 0.85),   # IoU 0.9: same detection
        _p(1, 3, [50, 50, 5, 5], 0.1),      # below the 0.25 score threshold: ignored
        _p(2, 1, [6, 0, 10, 10], 0.8),      # IoU 4/16 = 0.25 < 0.5: changed
        _p(3, 1, [5, 5, 10, 10], 0.7),      # class changed: changed
        # image 4: detection lost: changed
        _p(5, 1, [0, 0, 10, 10], 0.6),      # new confident detection: changed
    ]
    res = changed_images(_compact(base), _compact(other), [1, 2, 3, 4, 5, 6])
    assert res["image_ids"] == [2, 3, 4, 5]  # most unpaired first: 2 and 3 lose one and gain one each
    assert res["unpaired"] == [2, 2, 1, 1]
    assert res["count"] == 4 and res["of"] == 6
    assert changed_images(_compact(base), _compact(base), [1, 2, 3, 4])["count"] == 0


def _compact(preds: list[dict]) -> dict:
    """The compact arrays validate keeps for these detections."""
    from validator.predictions import compact

    return compact(preds)


def test_mean_recall_delta_is_paired_when_the_reference_confidence_is_given():
    fm = {"bbox": {"mean_recall": 0.60, "per_class": {}}}
    im = {"bbox": {"mean_recall": 0.50, "per_class": {}}}
    d = metric_deltas(fm, im, {"bbox": {"mean_recall": 0.55, "conf": 0.3}})["bbox"]
    assert d["mean_recall"] == pytest.approx(-5.0)  # 0.55 at the float's confidence vs the float's 0.60
    assert d["mean_recall_own_conf"] == pytest.approx(-10.0)  # each at its own optimum
    assert d["mean_recall_paired_conf"] == 0.3
    assert metric_deltas(fm, im)["bbox"]["mean_recall"] == pytest.approx(-10.0)  # unpaired without it


def test_changed_images_with_no_confident_detections_on_one_side():
    base = [_p(1, 1, [10, 10, 20, 20], 0.9)]
    res = changed_images(_compact(base), _compact([_p(1, 1, [10, 10, 20, 20], 0.1)]), [1, 2])
    assert res["image_ids"] == [1]
    assert changed_images(_compact([]), _compact([]), [1])["count"] == 0


def test_changed_image_iou_is_plain_iou_not_overlap_of_the_smaller_box():
    """A confident box inside one four times its size overlaps it fully but has IoU 0.25: the image changed.
    (Read as a crowd region, pycocotools would give intersection over the first box's area: 1.0.)"""
    a = [_p(1, 1, [0, 0, 10, 10], 0.9)]
    b = [_p(1, 1, [0, 0, 20, 20], 0.9)]
    res = changed_images(_compact(a), _compact(b), [1])
    assert res["image_ids"] == [1] and res["unpaired"] == [2]
    near = [_p(1, 1, [0, 0, 10, 12], 0.9)]  # IoU 100/120: the same detection
    assert changed_images(_compact(a), _compact(near), [1])["count"] == 0
