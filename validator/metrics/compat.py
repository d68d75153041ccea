"""``--metric compat``: the detections read the way Ultralytics ``val`` (8.4.190) reads them. This is NOT COCO.

Why: published YOLO tables come from Ultralytics' validator, whose numbers differ from COCO's for the same
detections. This module re-implements that validator's metric rules, as read from Ultralytics 8.4.190
(``engine/validator.py`` matching, ``utils/metrics.py`` AP, ``models/yolo/{detect,segment}/val.py``), in our
own code on our own data structures, so users can line our table up with such tables. COCO stays the
reference. Earlier Ultralytics releases differ (IoU-ordered matching; AP ramping from the last recall down to
(1, 0)); a published table rarely says which release produced it.

Rules (IoU thresholds t = 0.50:0.05:0.95):

* GT: crowd annotations (``iscrowd=1``) do not exist (YOLO labels cannot hold them and Ultralytics' COCO
  converter skips them), so a detection on a crowd region is a false positive; every other annotation is a
  target.
* IoU: per image, every detection against every target by ``pycocotools.mask.iou`` (boxes as xywh, or RLE
  masks for ``segm``; iscrowd all 0), set to 0 across classes.
* Matching (``match_by_confidence``): per image, detections in descending confidence; at each threshold
  separately, a detection claims the unclaimed target with the highest IoU (the lowest target index on
  ties) and is a TP iff that IoU >= t. One-to-one per threshold: a target claimed at 0.50 may be claimed
  by another detection at 0.75. (COCO's per-detection rule is the same bar crowds, the 100 cap, and ties,
  which COCO gives to the last equal target.)
* No maxDets cap: every detection given counts (the run's ``--max-det`` applies upstream).
* AP (``ap_101``), per class over all images, detections sorted by confidence: recall R and precision P
  curves; ``mrec = [0, R..., R[-1], 1]``, ``mpre = [1, P..., 0, 0]``, envelope = running max from the
  right, ``np.interp`` at ``linspace(0, 1, 101)``, trapezoid rule. The repeated knot at R[-1] carries 0
  (``np.interp`` takes the last of equal knots), so the curve drops to 0 right after the last recall
  reached: a perfect class scores 0.99 + 0.01 / 2 = 0.995, and a recall stopping on a grid point x gets
  only half of the last interval (1 up to 0.5 scores 0.495).
* Classes: mAP is the mean over classes with at least one target (a class with targets but no detection
  counts 0); detections of a class without targets are ignored (no AP, no P/R), as Ultralytics averages
  only over the classes present in the labels.
* Mean Precision / Recall / F1: ``validator.metrics.recall.f1_operating_point`` on these matches at IoU 0.50
  (the max of the 10 %-box-smoothed mean-F1 curve on a 1000-point confidence grid), as Ultralytics does.
* Area ranges and AR are not defined here (None).

Known differences from Ultralytics ``val`` that remain (what this module cannot or does not copy):

* Input pixels: Ultralytics decodes with OpenCV and resizes with ``INTER_LINEAR`` (no antialiasing), then
  letterboxes; ``--metric compat`` resizes with ``--resample linear`` by default, OpenCV's ``INTER_LINEAR``
  reproduced bit for bit, and decodes with PIL (both use libjpeg-turbo; on the shapes JPEGs the det fixture's
  numbers come out identical to Ultralytics'). Where Ultralytics' new size rounds differently from
  ``round(w * r)`` the content is one pixel apart. NMS is ours (same rules: multi-label for compat, conf
  0.001, IoU 0.7); Ultralytics' also has a per-batch time limit that can cut it short on a slow machine.
* Box clipping: none, as in Ultralytics: ``validate --metric compat`` writes predicted boxes as the model drew
  them (``Settings.clip_boxes=False``), reaching into the letterbox padding or past the image, and they are
  matched so. (Clipping them, as COCO results do, read mAP50-95 +0.91 / +0.55 pts above Ultralytics' val on
  the det / seg fixtures; unclipped: +0.16 / -0.23. docs/measurements/compat-vs-ultralytics.md.)
* Coordinate space and precision: Ultralytics compares in letterboxed input pixels with GT from normalised
  labels (6 decimals) and float32 IoU (box IoU with +1e-7 in the denominator) against float32 thresholds;
  we compare in original-image pixels, predictions rounded as written, float64 IoU. IoU does not depend on
  the scale, so only pairs within ~1e-6 of a threshold can flip.
* GT conversion: Ultralytics sees whatever its YOLO labels hold. One polygon per instance (for our shapes
  data ``tools/compare_ultralytics_val.py`` keeps the largest part), so a multi-part annotation loses its
  other parts, and a segment label's box is the box of that polygon, not the COCO ``bbox``. Duplicate label
  rows are dropped. We use the COCO annotation as is (all parts, COCO ``bbox``).
* Mask IoU resolution: Ultralytics ``val`` (without ``save_json``/``save_txt``) compares masks at the
  prototype resolution, input / 4 (64 x 64 for a 256 input), in letterbox space: predicted = prototype
  logits > 0, cropped to the box scaled to that grid (cells with x1 <= index < x2); GT = the polygon
  filled at input resolution (vertices truncated to integers), resized to input / 4 with ``INTER_LINEAR``,
  and with ``overlap_mask=True`` (default) all instances of an image share one index map in which the
  smaller instance wins overlapping pixels. With ``save_json``/``save_txt`` it upsamples predictions to the input
  size (``process_mask_native``) and GT bilinearly from input / 4 (threshold 0.5), still not the original
  image. ``retina_masks`` is a predict option, unused by val. We compare RLE masks at the original image's
  full resolution with pycocotools (predicted logits bilinearly resampled per original pixel, cropped by
  pixel centre to the box; GT from all polygon parts). Small objects differ most.
* Ties: equal scores are ordered by Ultralytics' NMS output and an unstable ``argsort`` per class; here
  stably in the order given (``validate`` writes image, -score, category, box). Equal-IoU targets: both take
  the first target, but Ultralytics' target order is its label order re-sorted (for segmentation by
  decreasing mask area, ``overlap_mask``), ours the annotation order.
* ``max_det``: Ultralytics raises it to the largest object count of an image in the split when that exceeds
  the default 300; ``--max-det`` here is fixed.
* Recall's denominator is n_targets + 1e-16 there (no effect at the reported digits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from validator.metrics import pooled
from validator.metrics.cocoeval import CocoResult, IouType, Metric

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AP_POINTS = np.linspace(0.0, 1.0, 101)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def match_by_confidence(iou: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """One image's TP table (detections x thresholds): confidence-ordered, one-to-one per threshold.

    ``iou`` is detections (rows, already in descending confidence) x targets, 0 across classes. Each
    threshold keeps its own set of claimed targets; a detection takes its best unclaimed target (lowest index
    on ties) and is a TP there iff that IoU reaches the threshold. Vectorised over thresholds, looped over
    the detections that reach the lowest threshold with some target (the others are FP everywhere).
    """
    n_det, n_gt = iou.shape
    tp = np.zeros((n_det, len(thresholds)), dtype=bool)
    if n_det == 0 or n_gt == 0:
        return tp
    t_idx = np.arange(len(thresholds))
    claimed = np.zeros((len(thresholds), n_gt), dtype=bool)  # threshold x target
    for d in np.flatnonzero(iou.max(axis=1) >= thresholds.min()):
        free = np.where(claimed, -1.0, iou[d][None, :])  # claimed targets can never win
        best = free.argmax(axis=1)  # first maximum: lowest target index on ties
        hit = free[t_idx, best] >= thresholds
        tp[d] = hit
        claimed[t_idx[hit], best[hit]] = True
    return tp


def ap_101(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP, curve closed at the last recall reached (see module docstring).

    An empty curve (a class without detections) scores 0.
    """
    if len(recall) == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [recall[-1], 1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0, 0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(_trapezoid(np.interp(AP_POINTS, mrec, envelope), AP_POINTS))


def class_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> np.ndarray:
    """AP at each IoU threshold for one class under this reading (``tp``: detections x thresholds)."""
    return pooled.class_ap(scores, tp, n_gt, ap_101)


def evaluate_compat(
    gt: Mapping[str, Any] | str | Path | Any,
    detections: Sequence[Mapping[str, Any]],
    iou_type: IouType | str,
    image_ids: Sequence[int] | None = None,
) -> CocoResult:
    """Ultralytics-``val``-style reading (not COCO) of ``detections``; same result shape as COCO's."""
    return pooled.evaluate_pooled(gt, detections, iou_type, image_ids, match=match_by_confidence, ap=ap_101,
                                  thresholds=IOU_THRESHOLDS, metric=Metric.COMPAT)
