"""The machinery the non-COCO readings share (``--metric compat``, ``--metric edgefirst``).

Both read detections the way YOLO tooling does rather than COCO's way: crowds dropped (a detection on a
crowd region is a false positive), IoU per image by ``pycocotools.mask.iou`` (boxes or RLE masks), set to 0
across classes, a matching rule per image giving a TP table (detections x IoU thresholds), the tables
pooled per class over all images, AP per class and threshold from the pooled precision-recall curve, mAP
over the classes that have targets, and Mean Recall at the smoothed-mean-F1 optimum. What differs between
readings is passed in: the matching rule, the AP rule (how the curve is closed), the IoU thresholds and
the recall denominator's epsilon. Each reading's module documents its rules and where they come from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from validator.metrics.cocoeval import (
    STAT_NAMES,
    Backend,
    CocoResult,
    IouType,
    Metric,
    check_image_ids,
    load_gt,
    prepare_detections,
)
from validator.metrics.recall import ClassMatches, f1_operating_point

Matcher = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (iou dets x targets, thresholds) -> TP table
ApRule = Callable[[np.ndarray, np.ndarray], float]  # (recall, precision) -> AP


def gt_object(gt: Any) -> Any:
    """Any COCO object (either backend) is used as is: only its index and ``annToRLE`` are needed."""
    if hasattr(gt, "annToRLE") and hasattr(gt, "imgToAnns"):
        return gt
    return load_gt(gt, Backend.PYCOCOTOOLS)


def class_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int, ap: ApRule, recall_eps: float = 0.0) -> np.ndarray:
    """AP at each IoU threshold for one class: ``tp`` is detections x thresholds."""
    if len(scores) == 0:
        return np.zeros(tp.shape[1])
    order = np.argsort(-scores, kind="stable")
    tpc = np.cumsum(tp[order], axis=0)
    fpc = np.cumsum(~tp[order], axis=0)
    recall, precision = tpc / (n_gt + recall_eps), tpc / (tpc + fpc)
    return np.array([ap(recall[:, t], precision[:, t]) for t in range(tp.shape[1])])


def _geometry(anns: list[dict], iou_type: IouType, coco: Any | None) -> Any:
    if iou_type is IouType.BBOX:
        return np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    if coco is None:  # detections: RLE already
        return [a["segmentation"] for a in anns]
    return [coco.annToRLE(a) for a in anns]


@dataclass(frozen=True, eq=False)
class ClassHits:
    """One class's detections over all images: scores and TP at each IoU threshold (N x T)."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int


def match_images(coco: Any, dets: list[dict], img_ids: list[int], cat_ids: list[int], iou_type: IouType,
                 match: Matcher, thresholds: np.ndarray) -> dict[int, ClassHits]:
    """Per image: drop crowds, IoU by pycocotools, ``match``; pooled per class."""
    from pycocotools import mask as mask_utils

    cats = set(cat_ids)
    dets_by_image: dict[int, list[dict]] = {}
    for d in dets:
        if d["category_id"] in cats:
            dets_by_image.setdefault(d["image_id"], []).append(d)
    n_gt = dict.fromkeys(cat_ids, 0)
    scores: dict[int, list[float]] = {c: [] for c in cat_ids}
    hits: dict[int, list[np.ndarray]] = {c: [] for c in cat_ids}
    for img in img_ids:
        gts = [g for g in coco.imgToAnns.get(img, []) if not g.get("iscrowd", 0) and g["category_id"] in cats]
        for g in gts:
            n_gt[g["category_id"]] += 1
        d_list = dets_by_image.get(img, [])
        d_list = [d_list[i] for i in np.argsort([-d["score"] for d in d_list], kind="stable")]
        tp = np.zeros((len(d_list), len(thresholds)), dtype=bool)
        if gts and d_list:
            dt_geom, gt_geom = _geometry(d_list, iou_type, None), _geometry(gts, iou_type, coco)
            iou = np.asarray(mask_utils.iou(dt_geom, gt_geom, [0] * len(gts)), dtype=np.float64)
            iou = iou.reshape(len(d_list), len(gts))
            d_cls = np.array([d["category_id"] for d in d_list])
            same = d_cls[:, None] == np.array([g["category_id"] for g in gts])[None, :]
            tp = match(np.where(same, iou, 0.0), thresholds)
        for d, row in zip(d_list, tp, strict=True):
            scores[d["category_id"]].append(d["score"])
            hits[d["category_id"]].append(row)
    return {c: ClassHits(np.array(scores[c], dtype=np.float64),
                         np.array(hits[c], dtype=bool).reshape(-1, len(thresholds)), n_gt[c]) for c in cat_ids}


def evaluate_pooled(gt: Mapping[str, Any] | str | Path | Any, detections: Sequence[Mapping[str, Any]],
                    iou_type: IouType | str, image_ids: Sequence[int] | None, *, match: Matcher, ap: ApRule,
                    thresholds: np.ndarray, metric: Metric, recall_eps: float = 0.0) -> CocoResult:
    """A pooled reading of ``detections`` with the given rules; the same result shape as COCO's.

    mAP is the mean over classes with at least one target (a class with targets but no detection counts
    0); detections of a class without targets count nowhere. Area ranges and AR are not defined (None).
    """
    iou_type = IouType(iou_type)
    coco = gt_object(gt)
    gt_ids = coco.getImgIds()
    img_ids = check_image_ids(image_ids, gt_ids)
    img_ids = sorted(gt_ids) if img_ids is None else img_ids
    dets = prepare_detections(detections, iou_type, gt_ids, img_ids)
    pooled = match_images(coco, dets, img_ids, sorted(coco.getCatIds()), iou_type, match, thresholds)

    t50 = int(np.flatnonzero(np.isclose(thresholds, 0.50))[0])
    t75 = int(np.flatnonzero(np.isclose(thresholds, 0.75))[0])
    per_class: dict[int, dict[str, Any]] = {}
    aps = []
    classes: dict[int, ClassMatches] = {}
    for c, h in pooled.items():
        if h.n_gt == 0:
            per_class[c] = {"AP50": None, "AP50_95": None, "n_gt": 0}
            continue
        a = class_ap(h.scores, h.tp, h.n_gt, ap, recall_eps)
        aps.append(a)
        per_class[c] = {"AP50": float(a[t50]), "AP50_95": float(a.mean()), "n_gt": h.n_gt}
        classes[c] = ClassMatches(h.scores, h.tp[:, t50], h.n_gt)

    stats: dict[str, float | None] = dict.fromkeys(STAT_NAMES)
    if aps:
        table = np.stack(aps)  # classes x thresholds
        stats["mAP50_95"] = float(table.mean())
        stats["mAP50"], stats["mAP75"] = float(table[:, t50].mean()), float(table[:, t75].mean())
    op = f1_operating_point(classes)
    return CocoResult(
        stats=stats, per_class=per_class,
        mean_recall=None if op is None else op.recall, mean_precision=None if op is None else op.precision,
        f1=None if op is None else op.f1, f1_conf=None if op is None else op.conf,
        iou_type=iou_type, backend=Backend.PYCOCOTOOLS, metric=metric, classes=classes,
    )
