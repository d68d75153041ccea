"""Greedy non-maximum suppression in numpy, exact and fast enough to run per image.

Why not the textbook loop (take the best box, drop everything overlapping it, repeat): each step costs a
pass over all remaining candidates, so 300 kept boxes among 8400 candidates took ~30 ms here. Instead,
candidates are taken in score order in blocks of ``BLOCK``:

1. drop the block's candidates that overlap an already kept box (one kept x block IoU matrix);
2. resolve the survivors among themselves with one survivors x survivors IoU matrix and a short scan
   in score order (a row OR per kept box);
3. stop as soon as ``max_det`` boxes are kept.

This gives exactly the greedy result (each candidate is tested against every kept box of higher rank,
same class). Measured on a busy 2-core machine, 8400 candidates, IoU 0.7, 300 kept: ~2-3 ms for
uniform or grid-anchored boxes; 6-15 ms when thousands of near-duplicates around a few objects each
need testing against many kept boxes (cost ~ kept x candidates); the textbook loop took 30-80 ms.

Class-aware suppression ANDs each IoU block with a same-class mask (skipped when only one class is
present). Measured on 8400 candidates against the coordinate-offset trick and a per-class loop (6 and
80 classes): the mask was as fast as the offset trick within this machine's noise (1.9-6 ms vs
1.9-2.9 ms) and 3-10x faster than the per-class loop, and unlike the offset, which float32 cannot hold
exactly (class 79 x 641 px needs float64), it never perturbs coordinates. IoU is computed for NMS only
(continuous coordinates, no +1), in float32, so a pair within float32 rounding of the threshold may go
either way; COCO matching is pycocotools' job.
"""

from __future__ import annotations

import numpy as np

BLOCK = 128  # best of 64/128/256/512 measured on uniform, grid-anchored and clustered candidates


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean (m, k): IoU(a_i, b_j) > t, for rows prepared by :func:`_prepare` (shape (5, m), (5, k)).

    IoU > t  <=>  inter > t * (area_a + area_b - inter)  <=>  (1 + t) * inter > t * area_a + t * area_b.
    The x coordinates arrive multiplied by (1 + t) and the areas by t, so the test costs ten array
    passes instead of fifteen. The height is not clipped at 0: with a clipped width >= 0 a negative
    height gives inter <= 0, which never exceeds the non-negative right-hand side. An empty union (two
    empty boxes) never suppresses.
    """
    inter = np.minimum(a[2][:, None], b[2])
    inter -= np.maximum(a[0][:, None], b[0])
    np.maximum(inter, 0, out=inter)
    h = np.minimum(a[3][:, None], b[3])
    h -= np.maximum(a[1][:, None], b[1])
    inter *= h
    return inter > np.add(a[4][:, None], b[4])


def _prepare(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(n, 4) xyxy -> float32 rows (1+t)*x1, y1, (1+t)*x2, y2, t*area (degenerate boxes: area 0)."""
    b = boxes.astype(np.float32).T
    rows = np.empty((5, b.shape[1]), dtype=np.float32)
    rows[[1, 3]] = b[[1, 3]]
    rows[[0, 2]] = b[[0, 2]] * np.float32(1 + iou_threshold)
    rows[4] = np.maximum(b[2] - b[0], 0) * np.maximum(b[3] - b[1], 0) * np.float32(iou_threshold)
    return rows


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    classes: np.ndarray | None = None,
    agnostic: bool = False,
    max_det: int = 300,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first.

    A box is suppressed by a kept box of higher rank (same class unless ``agnostic`` or ``classes`` is
    None) when their IoU is strictly greater than ``iou_threshold``. Ties in score keep input order
    (stable sort), so the result is deterministic. At most ``max_det`` indices are returned. Scores and
    boxes should be finite (decoders filter by confidence first; NaN scores rank last).
    """
    boxes_xyxy = np.asarray(boxes_xyxy)
    scores = np.asarray(scores)
    n = len(scores)
    if boxes_xyxy.shape != (n, 4):
        raise ValueError(f"boxes must be (n, 4) for n={n} scores, got {boxes_xyxy.shape}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if n == 0 or max_det <= 0:
        return np.empty(0, dtype=np.intp)

    order = np.argsort(-scores.astype(np.float64, copy=False), kind="stable")
    rows = _prepare(boxes_xyxy[order], iou_threshold)
    cls = None
    if not agnostic and classes is not None:
        cls = np.asarray(classes)[order].astype(np.int32)
        if np.all(cls == cls[0]):  # one class: the same-class mask would be all True
            cls = None

    kept: list[int] = []  # positions in score order
    kept_rows = rows[:, :0]
    kept_cls = None if cls is None else cls[:0]
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        cand = rows[:, start:stop]
        alive = np.arange(stop - start)
        if kept_rows.shape[1]:
            hit = _overlaps(kept_rows, cand)
            if cls is not None:
                hit &= kept_cls[:, None] == cls[start:stop]
            alive = np.flatnonzero(~hit.any(axis=0))
            if alive.size == 0:
                continue
            cand = cand[:, alive]
        cand_cls = None if cls is None else cls[start + alive]
        hit = _overlaps(cand, cand)
        if cand_cls is not None:
            hit &= cand_cls[:, None] == cand_cls
        suppressed = np.zeros(alive.size, dtype=bool)
        new: list[int] = []
        room = max_det - len(kept)
        for t in range(alive.size):  # rows of earlier survivors only ever suppress later ones
            if suppressed[t]:
                continue
            new.append(t)
            if len(new) == room:
                break
            suppressed |= hit[t]
        kept.extend((start + alive[new]).tolist())
        if len(kept) >= max_det:
            break
        kept_rows = np.concatenate([kept_rows, cand[:, new]], axis=1)
        if kept_cls is not None:
            kept_cls = np.concatenate([kept_cls, cand_cls[new]])
    return order[np.asarray(kept, dtype=np.intp)]
