"""``--metric edgefirst``: the detections read the way edgefirst-validator 6.0.9 reads them. This is NOT COCO.

Why: the reference accuracy table our users line up with (YOLOv8n on COCO: mAP@0.5, mAP@0.5-0.95, Mean
Recall; Det and Mask mAP for seg) was made with edgefirst-validator 6.0.9 (PyPI ``edgefirst-validator``, a
dev-only peer, never a dependency). Its numbers differ from COCO's and from today's Ultralytics ``val``
(``--metric compat``) for the same detections. This module re-implements its metric rules, as read from
the 6.0.9 wheel, in our own code on our own data structures. COCO stays the reference.

Rules (IoU thresholds t = 0.50, 0.55, ..., 0.95, the literal list of
``metrics/data/stats.py: DetectionStats.ious``); file references are into ``edgefirst/validator/``:

* GT: it reads only YOLO/Darknet label files, its own Arrow format or an LMDB cache
  (``datasets/utils/fetch.py: classify_dataset``, ``datasets/__init__.py: instantiate_dataset``); none can
  hold a crowd, so crowd annotations (``iscrowd=1``) do not exist here: a detection on a crowd region is a
  false positive. Every other annotation is a target.
* IoU: per image, every detection against every target by ``pycocotools.mask.iou`` (boxes as xywh, or RLE
  masks for ``segm``; iscrowd all 0), set to 0 across classes (``evaluators/detection.py:
  match_predictions`` multiplies the IoU by a same-class mask).
* Matching (``match_by_iou``, their ``DetectionValidator.match_predictions``, the IoU-ordered rule of
  YOLOv5 and Ultralytics <= 8.0): per image and per threshold, all (target, detection) pairs with
  IoU >= t are sorted by IoU, descending; each detection keeps its highest-IoU pair; then each target keeps
  the pair of the detection that comes FIRST IN DETECTION ORDER (``np.unique`` on the detection column
  re-sorts the pairs by detection index before the target ``np.unique``), i.e. the highest-ranked
  detection whose best target it is, not the one with the highest IoU. A detection whose best target went
  to another detection is a false positive at t even if a second target was free. Detection order is the
  NMS output order (descending score); here descending score, stable in the order given.
* No maxDets cap: every detection given counts (their NMS keeps at most ``--max-detections`` 300).
* AP (``ap_edgefirst``, their ``metrics/detection.py: compute_ap`` with ``v5_metric=True``,
  ``method="interp"``): per class over all images, detections sorted by confidence; recall
  R = TP / (n_gt + 1e-16), precision P = TP / (TP + FP); ``mrec = [0, R..., 1]``, ``mpre = [1, P..., 0]``,
  envelope = running max from the right, ``np.interp`` at ``linspace(0, 1, 101)``, trapezoid rule. The
  curve is closed at recall 1 with precision 0, so it runs linearly from (R[-1], P_env[-1]) down to (1, 0):
  a class whose recall stops at 0.5 with final precision 1 scores 0.75 (compat: 0.495).
* Classes (``ap_per_class``): mAP is the mean over the classes with at least one target (a class with
  targets but no detection counts 0); detections of a class without targets are ignored.
  mAP50 = mean of AP at 0.50, mAP75 at 0.75, mAP50-95 = mean over classes of the mean over thresholds.
* Mean Precision / Recall / F1 (their ``recall["mean"]``, the "Mean Recall" of the console table, not
  the "deployment" metrics): at IoU 0.50, per class P and R interpolated in score on ``linspace(0, 1,
  1000)`` (left: R = 0, P = 1; a class without detections is 0 everywhere), F1 = 2PR / (P + R + 1e-16),
  the first argmax of the mean F1 box-smoothed over 101 points; means over classes at that confidence.
  That is exactly ``validator.metrics.recall.f1_operating_point`` (the 1e-16 aside), which is used here.
* Area ranges and AR are not defined here (None).

Decode settings of its pipeline (``__main__.py`` defaults), which ``validate --metric edgefirst`` mirrors
(``validator/cli.py`` METRIC_DECODING): score threshold 0.001 (kept when >= 0.001), NMS IoU 0.70 (a box
is suppressed when IoU > 0.70), at most 300 boxes per image, class-agnostic NMS with one label per box
(the argmax class). Without ``edgefirst-hal`` installed (a plain ``pip install edgefirst-validator``) it
falls back to its NumPy NMS (``runners/processing/nms.py: nms``/``numpy_nms``), which is always
class-agnostic: ``--class-nms`` only works with ``--nms hal`` / ``tensorflow``. Boxes are never clipped
(they may reach into the letterbox padding or past the input): ``clip_boxes=False``. Its images are
resized with OpenCV's ``INTER_LINEAR`` (no antialiasing): ``--resample linear`` reproduces it bit for bit.

Masks (``--mask-resolution proto``, its default) are compared on the prototype grid, input / 4, in
letterbox space, and so here when ``frames`` are given (``validate --metric edgefirst`` does): predicted =
logits > 0 on the cells with ``x1 * w <= index < x2 * w`` of the normalised box
(``runners/processing/decode.py: process_masks_retina``; ``validator.decode.masks.proto_grid_rles``);
GT = each polygon resampled to 1000 points (``datasets/utils/readers.py``), mapped into the letterbox,
vertices truncated to int32, filled with PIL at input resolution and max-pooled 4 x 4 (any covered pixel
marks the cell, ``datasets/utils/annotation_transforms.py: polygon2mask``;
``validator.decode.masks.proto_grid_gt``), so GT masks are dilated by up to 3 input pixels. Instances do not
share an index map. At full resolution (COCO's way) the same detections read about 8 points higher in mask
mAP50-95 on our 256-input fixtures.

Known differences from edgefirst-validator 6.0.9 that remain:

* With ``edgefirst-hal`` installed its resize, NMS and mask materialisation are HAL's (Rust), not its
  Python path: the same tool then reads mask mAP50-95 3.5 pts lower and box figures up to 0.7 pts
  apart on our fixtures. This module follows the Python path (a plain install).
* Letterbox padding: it puts the odd padding pixel by ``round(dh / 2)`` (half to even), we by
  ``dh // 2``; for some image sizes the content sits one pixel apart.
* Coordinate space and precision: it compares in letterboxed input pixels against GT from normalised
  labels, in float32 (box IoU with +1e-7 in the denominator); we compare in original-image pixels with
  float64 IoU. IoU does not depend on the scale, so only pairs within ~1e-6 of a threshold can flip.
* GT conversion: it sees whatever its label files hold. A YOLO segment label is one polygon per instance
  (multi-part annotations merged or reduced to one part) and a segment label's box is the box of that
  polygon, not the COCO ``bbox``. We use the COCO annotation as is (every part filled).
* Ties: equal scores are ordered by its NMS output (``scores.argsort()[::-1]``) and then by
  ``np.argsort(-conf)`` over all detections (``ap_per_class``); both sorts are unstable, so the order of
  tied scores is arbitrary (numpy version and CPU dependent). Here ties keep the order given, stably
  (``validate`` writes image, -score, category, box); equal-IoU targets of one detection: the highest
  target index (what its sort gives on small arrays). This matters for INT8 models, whose dequantized
  scores take few values (34 and 56 distinct ones on our shapes fixtures): on its own detections of
  ``shapes-seg.int8.tflite`` its metric code with a stable instead of its unstable sort moves box Mean
  Precision from 71.69 to 69.72 and mAP50 from 57.94 to 58.15, and its NMS keeps other boxes among equal
  scores than ours. Its INT8 numbers cannot be reproduced better than that.

Measured with ``tools/compare_edgefirst.py`` (shapes split, 200 images, seed 3, fixture models at 256
input; docs/measurements/edgefirst.md): for the float det and seg models every figure (box and mask mAP50,
mAP50-95, Mean Recall, Mean Precision) is within 0.04 pts of edgefirst-validator 6.0.9 (plain install);
for the INT8 models within 0.4-1.5 pts, the tie effect above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from validator.metrics import pooled
from validator.metrics.cocoeval import CocoResult, IouType, Metric

# The literal list of edgefirst-validator (metrics/data/stats.py), not np.linspace(0.5, 0.95, 10), whose
# 0.65 is 0.6499999999999999.
IOU_THRESHOLDS = np.array([0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95])
AP_POINTS = np.linspace(0.0, 1.0, 101)
RECALL_EPS = 1e-16  # recall = tp / (n_gt + eps), as edgefirst-validator
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def match_by_iou(iou: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """One image's TP table (detections x thresholds), IoU-ordered as edgefirst-validator matches.

    ``iou`` is detections (rows, in detection order: rank 0 first) x targets, 0 across classes. At each
    threshold, a detection whose best IoU reaches it proposes its best target (the highest target index
    on equal IoUs); each target accepts the first proposing detection in detection order; accepted
    detections are TP, all others FP. A detection's best target does not depend on the threshold, only
    whether it is eligible does, so the table is built from one argmax per detection.
    """
    n_det, n_gt = iou.shape
    tp = np.zeros((n_det, len(thresholds)), dtype=bool)
    if n_det == 0 or n_gt == 0:
        return tp
    best = n_gt - 1 - iou[:, ::-1].argmax(axis=1)  # last maximum: highest target index on ties
    best_iou = iou[np.arange(n_det), best]
    for k, t in enumerate(thresholds):
        eligible = np.flatnonzero(best_iou >= t)
        if eligible.size == 0:
            continue
        _, first = np.unique(best[eligible], return_index=True)  # first eligible detection per target
        tp[eligible[first], k] = True
    return tp


def ap_edgefirst(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP with the curve closed at (recall 1, precision 0) (see module docstring).

    An empty curve (a class without detections) scores 0.
    """
    if len(recall) == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(_trapezoid(np.interp(AP_POINTS, mrec, envelope), AP_POINTS))


def class_ap(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> np.ndarray:
    """AP at each IoU threshold for one class under this reading (``tp``: detections x thresholds)."""
    return pooled.class_ap(scores, tp, n_gt, ap_edgefirst, RECALL_EPS)


def _on_proto_grid(gt: Any, detections: Sequence[Mapping[str, Any]], frames: Mapping[int, Any]):
    """Ground truth and detections as masks on the prototype grid (see the module docstring, masks)."""
    from validator.decode.masks import proto_grid_gt

    data = gt.dataset if hasattr(gt, "dataset") else gt
    if isinstance(data, (str, Path)):
        import json

        data = json.loads(Path(data).read_text())
    size = {im["id"]: (int(im["height"]), int(im["width"])) for im in data["images"]}
    anns = []
    for a in data["annotations"]:
        a = dict(a)
        if not a.get("iscrowd", 0) and a["image_id"] in frames and a.get("segmentation"):
            a["segmentation"] = proto_grid_gt(a["segmentation"], size[a["image_id"]], frames[a["image_id"]])
        anns.append(a)
    dets = []
    for d in detections:
        if "segmentation_proto" not in d:
            raise ValueError("proto-grid evaluation needs every detection's 'segmentation_proto'")
        dets.append({**d, "segmentation": d["segmentation_proto"]})
    return {**data, "annotations": anns}, dets


def evaluate_edgefirst(
    gt: Mapping[str, Any] | str | Path | Any,
    detections: Sequence[Mapping[str, Any]],
    iou_type: IouType | str,
    image_ids: Sequence[int] | None = None,
    frames: Mapping[int, Any] | None = None,
) -> CocoResult:
    """edgefirst-validator-6.0.9-style reading (not COCO) of ``detections``; same result shape as COCO's.

    ``frames`` ({image id: Letterbox}) switches ``segm`` to EdgeFirst's mask resolution: masks compared on
    the prototype grid in letterbox space (detections then carry ``segmentation_proto``, as
    ``validate --metric edgefirst`` writes them); without it masks are compared at full image resolution.
    """
    if IouType(iou_type) is IouType.SEGM and frames is not None:
        gt, detections = _on_proto_grid(gt, detections, frames)
    return pooled.evaluate_pooled(gt, detections, iou_type, image_ids, match=match_by_iou, ap=ap_edgefirst,
                                  thresholds=IOU_THRESHOLDS, metric=Metric.EDGEFIRST, recall_eps=RECALL_EPS)
