"""Error types of a detector (TIDE, Bolya et al., ECCV 2020): how much AP each kind of mistake costs.

Why here and not ``tidecv``: tidecv 1.0.1 runs under NumPy 2, but imports OpenCV, seaborn, pandas and appdirs
for its plots and downloads; qharness needs only its numbers. This module follows the paper's definitions
as tidecv 1.0.1 computes them, and ``tests/test_diagnose_error_types.py`` checks it equal to tidecv itself
(installed in the tests' session) on the fixtures and on hand-sized cases.

The definitions, at a foreground IoU ``pos`` (0.5) and a background IoU ``bg`` (0.1), per image, detections in
score order (at most 100), each matched greedily to the unmatched same-class ground truth of highest IoU
when that IoU >= ``pos``; a detection on a crowd region of its class (IoU > ``pos``) is ignored for AP.
Every other detection is one error, tested in this order:

- **Loc** (localisation): bg <= best IoU with a same-class ground truth <= pos.
- **Cls** (classification): IoU >= pos with a ground truth of another class.
- **Dupe** (duplicate): IoU >= pos with a same-class ground truth that another detection already took.
- **Bkg** (background): IoU <= bg with every ground truth (or the image has none).
- **Both** (class and location wrong): anything else.
- **Miss**: a ground truth no detection matched and no Loc/Cls error could have taken.

The AP each costs (dAP) is the AP@pos after fixing that type alone minus the AP as it is (clipped at 0): a
fixed Loc/Cls error becomes a true positive of its ground truth's class when it is the highest-scoring
error on a still unmatched ground truth (others are suppressed); fixed Dupe/Bkg/Both errors are removed;
a fixed Miss removes its ground truth. AP here is TIDE's: 101-point interpolated, every class with ground
truth or detections counted (a class with detections but no ground truth has AP 0, unlike COCO).
IoU is pycocotools' ``mask.iou`` (boxes or RLE masks); nothing of COCO matching is re-implemented beyond
the greedy rule above, which is TIDE's own and differs from COCOeval's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class ErrorType(str, Enum):
    """TIDE's main error types, in its order."""

    CLS = "Cls"
    LOC = "Loc"
    BOTH = "Both"
    DUPE = "Dupe"
    BKG = "Bkg"
    MISS = "Miss"


ERROR_NAMES = {
    ErrorType.CLS: "classification",
    ErrorType.LOC: "localisation",
    ErrorType.BOTH: "class and location",
    ErrorType.DUPE: "duplicate",
    ErrorType.BKG: "background",
    ErrorType.MISS: "missed",
}


@dataclass(frozen=True)
class ErrorBreakdown:
    """AP (in %, TIDE's) and the AP each error type costs (dAP, in points), with counts of each."""

    iou_type: str
    pos_thresh: float
    bg_thresh: float
    ap: float
    dap: Mapping[str, float]  # ErrorType value -> dAP
    counts: Mapping[str, int]
    false_positive_dap: float  # AP gained if every false positive scored 0 (perfect precision)
    false_negative_dap: float  # AP gained if every missed ground truth were found (perfect recall)

    def to_dict(self) -> dict:
        return {"iou_type": self.iou_type, "pos_thresh": self.pos_thresh, "bg_thresh": self.bg_thresh,
                "ap": self.ap, "dap": dict(self.dap), "counts": dict(self.counts),
                "false_positive_dap": self.false_positive_dap, "false_negative_dap": self.false_negative_dap}


@dataclass
class _Gt:
    cls: int
    used: bool = False
    usable: bool = False
    best_score: float = -1.0
    best_pred: int | None = None


@dataclass
class _Error:
    kind: ErrorType
    pred: int | None  # prediction id (None for Miss)
    cls: int  # the prediction's class, or the missed ground truth's
    score: float = 0.0
    counted: bool = True  # False: the prediction was ignored (on a crowd): not in AP as it is
    gt: _Gt | None = None  # the ground truth a Loc/Cls fix would take (None: already used, suppressed)


@dataclass
class _Points:
    """Per-class AP input: detections (id -> (score, true?)) in insertion order, and the positives."""

    points: dict = field(default_factory=dict)
    positives: int = 0


class _ClassedPoints:
    def __init__(self) -> None:
        self.by_class: dict[int, _Points] = {}

    def get(self, cls: int) -> _Points:
        if cls not in self.by_class:
            self.by_class[cls] = _Points()
        return self.by_class[cls]

    def mean_ap(self) -> float:
        aps = [_ap(p) for p in self.by_class.values() if p.points or p.positives]
        return sum(aps) / len(aps) if aps else 0.0


_RECALL_GRID = np.array([x / 100 for x in range(101)])


def _ap(p: _Points) -> float:
    """TIDE's AP of one class: precision made monotone, read at recall 0:0.01:1 (nearest recall at or
    above each grid point), averaged, x100."""
    if p.positives == 0:
        return 0
    data = sorted(p.points.values(), key=lambda x: -x[0])  # stable: ties keep insertion order
    precisions, recalls = [], []
    tp = fp = 0
    for _, correct in data:
        if correct:
            tp += 1
        else:
            fp += 1
        precisions.append(tp / (tp + fp))
        recalls.append(tp / p.positives)
    for i in range(len(precisions) - 1, 0, -1):
        if precisions[i] > precisions[i - 1]:
            precisions[i - 1] = precisions[i]
    y = [0] * 101
    for bar, idx in enumerate(np.searchsorted(np.array(recalls), _RECALL_GRID, side="left")):
        if idx < len(precisions):
            y[bar] = precisions[idx]
    return sum(y) / len(y) * 100


def _gt_region(ann: Mapping, image: Mapping, iou_type: str):
    """The annotation's box (x, y, w, h) or its RLE mask (pycocotools' conversion of polygons/RLE)."""
    if iou_type == "bbox":
        return list(ann["bbox"])
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    h, w = image["height"], image["width"]
    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg.get("counts"), list):
        return mask_utils.frPyObjects(seg, h, w)
    return seg


def _iou(dets: list, gts: list, crowd: bool) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if not dets or not gts:
        return np.zeros((len(dets), len(gts)))
    return np.asarray(mask_utils.iou(dets, gts, [crowd] * len(gts)), dtype=np.float64).reshape(len(dets), len(gts))


class _Run:
    """One TIDE evaluation: the AP data points as they are, and every error with how it would be fixed."""

    def __init__(self, gt: Mapping, preds: Sequence[Mapping], iou_type: str, pos: float, bg: float,
                 max_dets: int, image_ids: Iterable[int] | None):
        self.pos, self.bg, self.max_dets, self.iou_type = pos, bg, max_dets, iou_type
        self.points = _ClassedPoints()
        self.errors: list[_Error] = []
        self.false_negatives: dict[int, int] = {}
        images = {im["id"]: im for im in gt["images"]}
        order = list(images) if image_ids is None else [i for i in image_ids if i in images]
        wanted = set(order)
        gt_by_image: dict[int, list] = {i: [] for i in order}
        for ann in gt["annotations"]:
            if ann["image_id"] in wanted:
                gt_by_image[ann["image_id"]].append(ann)
        det_key = "bbox" if iou_type == "bbox" else "segmentation"
        pred_by_image: dict[int, list] = {i: [] for i in order}
        for pid, d in enumerate(preds):
            if d["image_id"] in wanted and det_key in d:
                pred_by_image[d["image_id"]].append((pid, d))
        for i in order:
            self._image(images[i], gt_by_image[i], pred_by_image[i])

    def _image(self, image: Mapping, anns: list, dets: list) -> None:
        truths = [a for a in anns if not a.get("iscrowd", 0)]
        crowds = [a for a in anns if a.get("iscrowd", 0)]
        for a in truths:
            self.points.get(a["category_id"]).positives += 1
        gts = [_Gt(a["category_id"]) for a in truths]
        if not dets:
            for g in gts:
                self._miss(g)
            return
        dets = sorted(dets, key=lambda t: -t[1]["score"])[: self.max_dets]
        key = "bbox" if self.iou_type == "bbox" else "segmentation"
        regions = [d[key] for _, d in dets]
        iou = _iou(regions, [_gt_region(a, image, self.iou_type) for a in truths], False)
        pred_cls = np.array([d["category_id"] for _, d in dets])
        used: list[bool | None] = [False] * len(dets)
        if gts:
            same = pred_cls[:, None] == np.array([g.cls for g in gts])[None, :]
            cls_iou = iou * same
            buffer = cls_iou.copy()
            for k in range(len(dets)):
                j = int(np.argmax(buffer[k]))
                if buffer[k, j] >= self.pos:
                    used[k] = True
                    gts[j].used = True
                    buffer[:, j] = 0
        for a in crowds:
            region = _iou(regions, [_gt_region(a, image, self.iou_type)], True)[:, 0]
            for k in range(len(dets)):
                if used[k] is False and region[k] > self.pos and a["category_id"] == pred_cls[k]:
                    used[k] = None
        if gts:
            gt_used = np.array([g.used for g in gts])[None, :]
            noncls_iou = iou * ~same
            used_cls_iou = (gt_used * iou) * same
        for k, (pid, d) in enumerate(dets):
            cls, score = int(d["category_id"]), float(d["score"])
            if used[k] is not None:
                self.points.get(cls).points[pid] = (score, bool(used[k]))
            if used[k] is True:
                continue
            err = _Error(ErrorType.BKG, pid, cls, score, counted=used[k] is not None)
            if gts:
                j = int(np.argmax(cls_iou[k]))
                if self.bg <= cls_iou[k, j] <= self.pos:
                    err.kind = ErrorType.LOC
                    err.gt = self._candidate(gts[j], pid, score)
                else:
                    j = int(np.argmax(noncls_iou[k]))
                    if noncls_iou[k, j] >= self.pos:
                        err.kind = ErrorType.CLS
                        err.gt = self._candidate(gts[j], pid, score)
                    elif used_cls_iou[k].max() >= self.pos:
                        err.kind = ErrorType.DUPE
                    elif iou[k].max() <= self.bg:
                        err.kind = ErrorType.BKG
                    else:
                        err.kind = ErrorType.BOTH
            self.errors.append(err)
        for g in gts:
            if not g.used:
                self.false_negatives[g.cls] = self.false_negatives.get(g.cls, 0) + 1
                if not g.usable:
                    self.errors.append(_Error(ErrorType.MISS, None, g.cls))

    def _miss(self, g: _Gt) -> None:
        self.false_negatives[g.cls] = self.false_negatives.get(g.cls, 0) + 1
        self.errors.append(_Error(ErrorType.MISS, None, g.cls))

    @staticmethod
    def _candidate(g: _Gt, pid: int, score: float) -> _Gt | None:
        """A Loc/Cls error's ground truth, if a fix could still take it; the highest score wins it."""
        if g.used:
            return None
        g.usable = True
        if g.best_score < score:
            g.best_score, g.best_pred = score, pid
        return g

    # ------------------------------------------------------------------------------- fixing errors
    def fixed(self, kind: ErrorType | None = None, perfect_precision: bool = False,
              perfect_recall: bool = False) -> float:
        """TIDE's mAP after fixing every error of ``kind`` (None: none), or with every false positive
        scored 0 (``perfect_precision``), or with every missed ground truth dropped (``perfect_recall``)."""
        positives = {c: p.positives for c, p in self.points.by_class.items()}
        out = _ClassedPoints()

        def score_of(score: float, correct: bool) -> float:
            return (1 if correct else 0) if perfect_precision else score

        for e in self.errors:
            if e.kind is kind:
                if e.kind is ErrorType.MISS:
                    positives[e.cls] -= 1
                elif e.kind in (ErrorType.LOC, ErrorType.CLS) and e.gt is not None and e.gt.best_pred == e.pred:
                    target = e.gt.cls if e.kind is ErrorType.CLS else e.cls
                    out.get(target).points[e.pred] = (score_of(e.score, True), True)
                continue
            if e.pred is not None and e.counted:
                out.get(e.cls).points[e.pred] = (score_of(e.score, False), False)
        for c in positives:
            for pid, (score, correct) in self.points.by_class[c].points.items():
                if correct:
                    out.get(c).points[pid] = (score_of(score, True), True)
        for c, n in positives.items():
            if perfect_recall:
                n -= self.false_negatives.get(c, 0)
            out.get(c).positives += n
        return out.mean_ap()


def error_breakdown(gt: Mapping, preds: Sequence[Mapping], iou_type: str = "bbox", *, pos_thresh: float = 0.5,
                    bg_thresh: float = 0.1, max_dets: int = 100,
                    image_ids: Iterable[int] | None = None) -> ErrorBreakdown:
    """TIDE's error breakdown of ``preds`` (COCO results dicts) against ``gt`` (a COCO dataset dict).

    ``image_ids``: the images evaluated, in order (default: every image of ``gt``); detections on other
    images are not read. ``iou_type`` "segm" scores the RLE ``segmentation`` of each detection."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be bbox or segm, not {iou_type!r}")
    run = _Run(gt, preds, iou_type, pos_thresh, bg_thresh, max_dets, image_ids)
    base = run.points.mean_ap()
    dap = {k.value: max(run.fixed(k) - base, 0) for k in ErrorType}
    counts = {k.value: sum(e.kind is k for e in run.errors) for k in ErrorType}
    return ErrorBreakdown(iou_type, pos_thresh, bg_thresh, base, dap, counts,
                          run.fixed(perfect_precision=True) - base, run.fixed(perfect_recall=True) - base)
