"""``--metric compat``: an Ultralytics-``val``-style reading of the detections. This is NOT COCO.

Why: published YOLO tables (such as seed 001's) come from Ultralytics-style validators, whose numbers differ
from COCO's for the same detections. This reading re-implements that published definition from its
description, so users can line our table up with such tables; the COCO numbers stay the reference.

Definition (per IoU threshold t in 0.50:0.05:0.95):

* crowd GT (``iscrowd=1``) are dropped entirely, so a detection on a crowd region is a false positive;
* per image, IoU between every detection and every GT by ``pycocotools.mask.iou`` (boxes as xywh, or RLE
  masks for ``segm``, iscrowd all 0); a pair is a candidate if same class and IoU >= t;
* candidates are taken greedily by IoU, highest first, each detection and each GT at most once (ties:
  higher-scored detection, then lower GT index). Unlike COCO's score-ordered matching, a lower-scored
  detection with a better IoU wins the GT;
* no maxDets cap: every detection given counts (the run's max-det applies upstream);
* per class, detections sorted by score give recall and precision curves; AP is the area under the
  precision envelope by 101-point interpolation *including the recall endpoint*: ``mrec = [0, R..., 1]``,
  ``mpre = [1, P..., 0]``, envelope = running max from the right, ``trapezoid`` of ``interp`` over
  ``linspace(0, 1, 101)``. So a perfect class scores 0.995 and one stopping at recall r still gets the
  ramp from (r, P_r) down to (1, 0) — unlike COCO;
* mAP = mean over classes with GT; Mean Recall / Precision / F1 as in ``validator.metrics.recall`` but
  from these matches at IoU 0.50.

Area ranges and AR are not defined here (None).

Version note: Ultralytics' own ``val`` has changed over releases. 8.4.190 (the fixtures venv's) differs in two
places: each detection, in confidence order, takes its best unclaimed GT, and the envelope ends at the last
recall reached (no ramp to (1, 0)). A published table does not say which release produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AP_POINTS = np.linspace(0.0, 1.0, 101)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def _gt_object(gt: Any) -> Any:
    """Any COCO object (either backend) is used as is: only its index and ``annToRLE`` are needed."""
    if hasattr(gt, "annToRLE") and hasattr(gt, "imgToAnns"):
        return gt
    return load_gt(gt, Backend.PYCOCOTOOLS)


def greedy_by_iou(iou: np.ndarray, min_iou: float) -> np.ndarray:
    """IoU-ordered one-to-one matching; returns each detection's matched IoU (0 where unmatched).

    ``iou`` is detections x GT, already 0 across classes. Matching at a higher threshold t is the same greedy
    pass stopped at the first pair below t (a prefix of the same ordered list), so one pass at ``min_iou``
    serves every threshold: a detection is a TP at t iff its matched IoU >= t.
    """
    matched = np.zeros(iou.shape[0])
    d_idx, g_idx = np.nonzero(iou >= min_iou)  # row-major: detection rank, then GT index
    if d_idx.size == 0:
        return matched
    order = np.argsort(-iou[d_idx, g_idx], kind="stable")
    used_d = np.zeros(iou.shape[0], dtype=bool)
    used_g = np.zeros(iou.shape[1], dtype=bool)
    for d, g in zip(d_idx[order], g_idx[order], strict=True):
        if not (used_d[d] or used_g[g]):
            used_d[d] = used_g[g] = True
            matched[d] = iou[d, g]
    return matched


def ap_101(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP with both sentinels (see module docstring)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(_trapezoid(np.interp(AP_POINTS, mrec, envelope), AP_POINTS))


def class_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> np.ndarray:
    """AP at each IoU threshold for one class: ``tp`` is detections x thresholds."""
    if len(scores) == 0:
        return np.zeros(tp.shape[1])
    order = np.argsort(-scores, kind="stable")
    tpc = np.cumsum(tp[order], axis=0)
    fpc = np.cumsum(~tp[order], axis=0)
    recall, precision = tpc / n_gt, tpc / (tpc + fpc)
    return np.array([ap_101(recall[:, t], precision[:, t]) for t in range(tp.shape[1])])


def _geometry(anns: list[dict], iou_type: IouType, coco: Any | None) -> Any:
    if iou_type is IouType.BBOX:
        return np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    if coco is None:  # detections: RLE already
        return [a["segmentation"] for a in anns]
    return [coco.annToRLE(a) for a in anns]


@dataclass(frozen=True, eq=False)
class _ClassHits:
    """One class's detections over all images: scores and TP at each IoU threshold (N x 10)."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int


def _match_images(
    coco: Any, dets: list[dict], img_ids: list[int], cat_ids: list[int], iou_type: IouType
) -> dict[int, _ClassHits]:
    """Per image: drop crowds, IoU by pycocotools, IoU-ordered matching; pooled per class."""
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
        best = np.zeros(len(d_list))
        if gts and d_list:
            dt_geom, gt_geom = _geometry(d_list, iou_type, None), _geometry(gts, iou_type, coco)
            iou = np.asarray(mask_utils.iou(dt_geom, gt_geom, [0] * len(gts)), dtype=np.float64)
            iou = iou.reshape(len(d_list), len(gts))
            d_cls = np.array([d["category_id"] for d in d_list])
            same = d_cls[:, None] == np.array([g["category_id"] for g in gts])[None, :]
            best = greedy_by_iou(np.where(same, iou, 0.0), IOU_THRESHOLDS[0])
        tp = (best[:, None] >= IOU_THRESHOLDS[None, :]) & (best[:, None] > 0)
        for d, row in zip(d_list, tp, strict=True):
            scores[d["category_id"]].append(d["score"])
            hits[d["category_id"]].append(row)
    return {
        c: _ClassHits(
            np.array(scores[c], dtype=np.float64),
            np.array(hits[c], dtype=bool).reshape(-1, len(IOU_THRESHOLDS)),
            n_gt[c],
        )
        for c in cat_ids
    }


def evaluate_compat(
    gt: Mapping[str, Any] | str | Path | Any,
    detections: Sequence[Mapping[str, Any]],
    iou_type: IouType | str,
    image_ids: Sequence[int] | None = None,
) -> CocoResult:
    """Ultralytics-style compatibility reading (not COCO) of ``detections``; same result shape as COCO's."""
    iou_type = IouType(iou_type)
    coco = _gt_object(gt)
    gt_ids = coco.getImgIds()
    img_ids = check_image_ids(image_ids, gt_ids)
    img_ids = sorted(gt_ids) if img_ids is None else img_ids
    dets = prepare_detections(detections, iou_type, gt_ids, img_ids)
    per_image = _match_images(coco, dets, img_ids, sorted(coco.getCatIds()), iou_type)

    t50, t75 = 0, int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0])
    per_class: dict[int, dict[str, Any]] = {}
    aps = []
    classes: dict[int, ClassMatches] = {}
    for c, h in per_image.items():
        if h.n_gt == 0:
            per_class[c] = {"AP50": None, "AP50_95": None, "n_gt": 0}
            continue
        ap = class_ap(h.scores, h.tp, h.n_gt)
        aps.append(ap)
        per_class[c] = {"AP50": float(ap[t50]), "AP50_95": float(ap.mean()), "n_gt": h.n_gt}
        classes[c] = ClassMatches(h.scores, h.tp[:, t50], h.n_gt)

    stats: dict[str, float | None] = dict.fromkeys(STAT_NAMES)
    if aps:
        table = np.stack(aps)  # classes x thresholds
        stats["mAP50_95"] = float(table.mean())
        stats["mAP50"], stats["mAP75"] = float(table[:, t50].mean()), float(table[:, t75].mean())
    op = f1_operating_point(classes)
    return CocoResult(
        stats=stats,
        per_class=per_class,
        mean_recall=None if op is None else op.recall,
        mean_precision=None if op is None else op.precision,
        f1=None if op is None else op.f1,
        f1_conf=None if op is None else op.conf,
        iou_type=iou_type,
        backend=Backend.PYCOCOTOOLS,
        metric=Metric.COMPAT,
    )
