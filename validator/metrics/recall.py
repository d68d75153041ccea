"""Mean Recall, Mean Precision and F1 at the F1-optimal confidence (the seed table's "Mean Recall").

Why a second recall: COCO's AR@100 averages recall over IoU 0.50:0.95 with every detection kept, which is
not what published YOLO tables call "Mean Recall". Those (Ultralytics ``val``, EdgeFirst validator) report
recall at IoU 0.50 at one confidence, the one that maximises the mean F1 over classes. This module
re-implements that published definition from its description:

1. Matches are COCO's own: the per-image evaluation records at IoU 0.50, area range "all", maxDets 100
   (crowd regions and detections matched to them are ignored exactly as COCO ignores them). Per class
   ``c`` we keep every non-ignored detection's (score, matched?) and ``n_c``, the number of non-ignored GT.
2. For each class with ``n_c > 0``: sort its detections by score, descending; after the ``i``-th one,
   ``R_c(i) = TP_i / n_c`` and ``P_c(i) = TP_i / (TP_i + FP_i)``.
3. Sample both on the confidence grid ``x_j = j / 999`` (1000 points in [0, 1]) by linear interpolation
   in score: above the top score ``R = 0`` and ``P = 1``; below the lowest score both keep their final
   values. A class with GT but no detection has ``P = R = 0`` everywhere.
4. ``F1_c = 2 P R / (P + R)`` (0 where ``P + R = 0``); ``F1(x)`` is its mean over classes with GT.
5. Smooth ``F1(x)`` with a centred box filter 10 % of the grid wide (101 points, edges padded with the
   edge values), take the first argmax ``j*``.
6. Report, at ``x_j*``: Mean Recall = mean over classes of ``R_c``, Mean Precision = mean of ``P_c``,
   F1 = mean of ``F1_c`` (unsmoothed), and the confidence ``x_j*``.

Pure numpy over the backends' match records: no matching happens here. ``--metric compat`` feeds the same
function with its own (Ultralytics-style) matches instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

GRID_POINTS = 1000
SMOOTH_FRACTION = 0.1


@dataclass(frozen=True, eq=False)
class ImageMatches:
    """One per-image, per-class COCO evaluation record at IoU 0.50 / area "all" / maxDets 100."""

    category_id: int
    scores: np.ndarray  # (D,) detection scores
    matched: np.ndarray  # (D,) bool: matched to some GT (possibly a crowd)
    ignored: np.ndarray  # (D,) bool: COCO ignores it (matched to a crowd / ignored GT)
    n_gt: int  # non-ignored GT of this class in this image


@dataclass(frozen=True, eq=False)
class ClassMatches:
    """All non-ignored detections of one class over the evaluated images."""

    scores: np.ndarray  # (N,)
    tp: np.ndarray  # (N,) bool
    n_gt: int


@dataclass(frozen=True)
class OperatingPoint:
    """The F1-optimal operating point; per-class values are keyed by category id."""

    recall: float
    precision: float
    f1: float
    conf: float
    class_recall: dict[int, float] = field(default_factory=dict)
    class_precision: dict[int, float] = field(default_factory=dict)


def collect(records: Iterable[ImageMatches]) -> dict[int, ClassMatches]:
    """Pool per-image records into per-class (score, TP) lists, dropping ignored detections."""
    scores: dict[int, list[np.ndarray]] = {}
    tps: dict[int, list[np.ndarray]] = {}
    n_gt: dict[int, int] = {}
    for r in records:
        keep = ~np.asarray(r.ignored, dtype=bool)
        scores.setdefault(r.category_id, []).append(np.asarray(r.scores, dtype=np.float64)[keep])
        tps.setdefault(r.category_id, []).append(np.asarray(r.matched, dtype=bool)[keep])
        n_gt[r.category_id] = n_gt.get(r.category_id, 0) + int(r.n_gt)
    return {c: ClassMatches(np.concatenate(scores[c]), np.concatenate(tps[c]), n_gt[c]) for c in sorted(n_gt)}


def box_smooth(y: np.ndarray, fraction: float = SMOOTH_FRACTION) -> np.ndarray:
    """Centred moving average over ``2 * round(len * fraction / 2) + 1`` points, edge-padded."""
    half = int(round(len(y) * fraction / 2))
    padded = np.pad(np.asarray(y, dtype=np.float64), half, mode="edge")
    return np.convolve(padded, np.full(2 * half + 1, 1.0 / (2 * half + 1)), mode="valid")


def class_curves(m: ClassMatches, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of one class sampled on the confidence grid (see module docstring, 2-3)."""
    if m.n_gt <= 0:
        raise ValueError("class without ground truth has no recall curve")
    if len(m.scores) == 0:
        return np.zeros_like(grid), np.zeros_like(grid)
    order = np.argsort(-m.scores, kind="stable")
    scores, tp = m.scores[order], m.tp[order]
    tpc = np.cumsum(tp)
    fpc = np.cumsum(~tp)
    recall = tpc / m.n_gt
    precision = tpc / (tpc + fpc)
    # np.interp needs increasing x: negate scores (descending -> ascending) and the grid.
    r = np.interp(-grid, -scores, recall, left=0.0)
    p = np.interp(-grid, -scores, precision, left=1.0)
    return p, r


def f1_scores(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Harmonic mean, 0 where precision and recall are both 0."""
    s = p + r
    return np.divide(2.0 * p * r, s, out=np.zeros_like(s, dtype=np.float64), where=s > 0)


def f1_operating_point(classes: Mapping[int, ClassMatches], at_conf: float | None = None) -> OperatingPoint | None:
    """Mean recall / precision / F1 at the smoothed-mean-F1-optimal confidence; None if no class has GT.

    ``at_conf`` reads the same curves at a given confidence instead (the grid point nearest to it): how an
    INT8 model does at the float model's operating point. A paired comparison at one confidence is stable
    where each model's own optimum is not: when the mean-F1 curve is flat, the argmax wanders along it and
    recall swings with it (seen: F1 0.622-0.628 over confidence 0.30-0.45 while recall went 61 -> 52 %).
    """
    ids = [c for c, m in classes.items() if m.n_gt > 0]
    if not ids:
        return None
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    curves = [class_curves(classes[c], grid) for c in ids]
    p = np.stack([pc for pc, _ in curves])
    r = np.stack([rc for _, rc in curves])
    f1 = f1_scores(p, r)
    if at_conf is None:
        j = int(np.argmax(box_smooth(f1.mean(axis=0))))
    else:
        j = int(np.argmin(np.abs(grid - float(at_conf))))
    return OperatingPoint(
        recall=float(r[:, j].mean()),
        precision=float(p[:, j].mean()),
        f1=float(f1[:, j].mean()),
        conf=float(grid[j]),
        class_recall={c: float(v) for c, v in zip(ids, r[:, j], strict=True)},
        class_precision={c: float(v) for c, v in zip(ids, p[:, j], strict=True)},
    )
