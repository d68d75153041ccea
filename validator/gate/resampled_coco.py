"""COCO AP/AR and Mean Recall of bootstrap resamples, from the evaluation's own per-image matches.

Why: the gate's intervals re-read an evaluation on B resampled image sets (B = 1000). Handing each resample
to the backend's own ``accumulate`` cost 35 ms at 200 images and grew with the detections (86 of a 94 s
gated run; tens of minutes at COCO scale). Here a resample is a vector of image multiplicities, and the
precision/recall arrays of a batch of resamples are computed at once from match tables built once per
evaluation, equal to the backend's ``accumulate`` on the same resample to the last digit (tests hold both
to it element by element):

* The matches are the backend's: per image and class, each detection's matched and ignored flags at every
  IoU threshold, its score and the image's non-ignored ground truth (``PerImage``, read from
  faster-coco-eval's per-image evaluations or pycocotools' ``evalImgs``). Nothing is matched here.
* Order: COCO concatenates a resample's images in order and stable-sorts by score. Resample rows are
  sorted (:func:`validator.gate.intervals.resample_indices`), so the order is the full evaluation's (by
  score, ties by image, then within the image) with each image's detections repeated as often as the image
  was drawn; a run of detections with one score from one image (a "block") repeats as a whole.
* Precision is only read where the interpolated curve can change: right after true positives that a false
  positive follows (after a false positive precision falls at the same recall, and along true positives
  it rises). So each IoU threshold has "points": one per run of blocks holding true positives and no false
  positive (its end, whatever the weights), and, for a block mixing both, each run end of each copy (a
  repeat interleaves them). A point's counts are exact integers: the true positives up to it and the false
  positives before it, the latter as every detection before the point's first block (one sum shared by all
  thresholds) minus the true positives and ignored detections before it. Every such sum over a batch of
  resamples is a sparse matrix (points x images, counts) times the batch's image multiplicities.
  Precision and recall are the backend's own divisions of those integers (pycocotools adds
  ``np.spacing(1)`` to the precision's denominator, faster-coco-eval does not); a recall threshold reads
  the first point whose true-positive count reaches the smallest integer k with ``k / npig >= threshold``
  (an integer search), and the interpolated precision there is the maximum over that point and every later
  one of its class (maxima between consecutive threshold points, then a running maximum over the 101).
* Mean Recall reads the IoU-0.50 / area "all" / maxDets 100 matches without ignored detections, as
  ``validator.metrics.recall`` does; a resample's curves are those of the expanded list, sampled on the
  confidence grid as ``np.interp`` samples it: between the last copy of the last present score at or
  above a grid point (the weighted counts of every detection there) and the first copy of the next one,
  with the same arithmetic (``slope * (x - x0) + y0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from validator.metrics.cocoeval import PerImage
from validator.metrics.recall import GRID_POINTS, box_smooth, f1_scores

BATCH_ELEMENTS = 16_000_000  # resamples x points (or groups) per batch: ~130 MB of int64 working arrays
EXACT_F32 = 1 << 24  # integer counts stay exact in float32 below this


def weights_of(idx: np.ndarray, n_images: int) -> np.ndarray:
    """(B, I) int64 multiplicity of each image in each resample row of ``idx`` (B, N)."""
    B = idx.shape[0]
    flat = (idx + (np.arange(B) * n_images)[:, None]).ravel()
    return np.bincount(flat, minlength=B * n_images).reshape(B, n_images).astype(np.int64)


def _gather_class(records_k: Sequence[PerImage | None], max_det: int):
    """One class's detections over images in order, stably sorted by score (COCO's accumulate order)."""
    imgs, scores, matched, ignored = [], [], [], []
    for i, r in enumerate(records_k):
        if r is None:
            continue
        d = min(len(r.scores), max_det)
        if d == 0:
            continue
        imgs.append(np.full(d, i, np.int64))
        scores.append(np.asarray(r.scores[:d], np.float64))
        matched.append(np.asarray(r.matched)[:, :d])
        ignored.append(np.asarray(r.ignored)[:, :d])
    if not imgs:
        return None
    img, score = np.concatenate(imgs), np.concatenate(scores)
    order = np.argsort(-score, kind="stable")
    return (img[order], score[order], np.concatenate(matched, axis=1)[:, order].astype(bool),
            np.concatenate(ignored, axis=1)[:, order].astype(bool))


def _ngt(records: Sequence[Sequence[PerImage | None]], n_img: int) -> np.ndarray:
    ngt = np.zeros((len(records), n_img), np.int64)
    for k, row in enumerate(records):
        for i, r in enumerate(row):
            if r is not None:
                ngt[k, i] = r.n_gt
    return ngt


def _counts(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]):
    """A sparse (rows x images) matrix of counts, float32 (exact for the integers it holds)."""
    import scipy.sparse as sp

    keep = vals != 0
    return sp.csr_matrix((vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=shape)


def _seg_cumsum(x: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Inclusive cumulative sum along axis 0 restarting at each segment (rows in segment order)."""
    c = np.cumsum(x, axis=0)
    if not len(x):
        return c
    first = np.searchsorted(seg, np.arange(n_seg))
    before = np.zeros((n_seg,) + x.shape[1:], c.dtype)
    has = (first > 0) & (first < len(x))
    before[has] = c[first[has] - 1]
    return c - before[seg]


# --------------------------------------------------------------------------------------------- AP / AR
@dataclass(eq=False)
class _Entries:
    """One IoU threshold: its entries (runs of true-positive blocks, and mixed blocks), class-major in
    sequence order, with the sparse sums a batch of resamples reads them through."""

    cls: np.ndarray  # (E,) class index
    q: np.ndarray  # (E,) row of the entry's first block in the shared "detections before" matrix
    mixed: np.ndarray  # (E,) bool
    img: np.ndarray  # (E,) the image of a mixed block (its copies' weight)
    T: np.ndarray  # (E,) a mixed block's true positives (pattern)
    F: np.ndarray  # (E,) a mixed block's false positives (pattern)
    d_tp: object  # sparse (E, I): true positives of the entry per image
    d_ig: object  # sparse (E, I): ignored detections between the previous entry and this one, per image
    run_ends: list  # per mixed entry: (e_tp, e_fp) arrays of its pattern's run ends
    expanded: dict = field(default_factory=dict)  # slots -> (src, copy, e_tp, e_fp, e_fp_last)

    def layout(self, slots: int):
        """The points: entries, with each mixed entry's run ends repeated for ``slots`` copies (copy-major
        within the entry): (src entry, copy, run end's tp, its fp, the last run end's fp)."""
        slots = max(1, slots)
        if slots in self.expanded:
            return self.expanded[slots]
        n = np.array([len(self.run_ends[e][0]) * slots if self.mixed[e] else 1 for e in range(len(self.cls))],
                     np.int64)
        src = np.repeat(np.arange(len(self.cls)), n)
        copy = np.zeros(len(src), np.int64)
        etp = np.zeros(len(src), np.int64)
        efp = np.zeros(len(src), np.int64)
        elast = np.zeros(len(src), np.int64)
        starts = np.r_[0, np.cumsum(n)[:-1]]
        for e in np.flatnonzero(self.mixed):
            a, b = self.run_ends[e]
            lo, k = starts[e], len(a)
            copy[lo:lo + k * slots] = np.repeat(np.arange(slots), k)
            etp[lo:lo + k * slots] = np.tile(a, slots)
            efp[lo:lo + k * slots] = np.tile(b, slots)
            elast[lo:lo + k * slots] = b[-1]
        self.expanded[slots] = (src, copy, etp, efp, elast)
        return self.expanded[slots]


@dataclass(eq=False)
class SliceTable:
    """Every detection of one (area range, maxDets) slice, all classes, cut into blocks (same class, score
    and image) in COCO's accumulate order, with the points of every IoU threshold."""

    n_classes: int
    n_images: int
    ngt: np.ndarray  # (K, I) non-ignored ground truth
    d_all: object  # sparse (Q, I): detections between consecutive query blocks (shared by every threshold)
    q_cls: np.ndarray  # (Q,) class of each query block
    ious: list[_Entries]
    n_dets: int
    eps: float  # added to precision's denominator (pycocotools: np.spacing(1))

    @classmethod
    def build(cls, records: Sequence[Sequence[PerImage | None]], n_iou: int, max_det: int,
              eps: float = 0.0) -> SliceTable:
        """``records[k][i]``: the per-image evaluations of one area range."""
        K = len(records)
        n_img = len(records[0]) if K else 0
        parts = [(k, g) for k in range(K) if (g := _gather_class(records[k], max_det)) is not None]
        if parts:
            d_cls = np.concatenate([np.full(len(g[0]), k, np.int64) for k, g in parts])
            img = np.concatenate([g[0] for _, g in parts])
            score = np.concatenate([g[1] for _, g in parts])
            matched = np.concatenate([g[2] for _, g in parts], axis=1)
            ignored = np.concatenate([g[3] for _, g in parts], axis=1)
        else:
            d_cls = img = np.zeros(0, np.int64)
            score = np.zeros(0)
            matched = ignored = np.zeros((n_iou, 0), bool)
        n = len(d_cls)
        starts = np.flatnonzero(np.r_[True, (d_cls[1:] != d_cls[:-1]) | (img[1:] != img[:-1])
                                      | (score[1:] != score[:-1])]) if n else np.zeros(0, np.int64)
        b_cls, b_img = d_cls[starts], img[starts]
        tp = matched & ~ignored
        fp = ~matched & ~ignored
        red = (lambda a: np.add.reduceat(a.astype(np.int64), starts, axis=1)) if n else \
            (lambda a: np.zeros((a.shape[0], 0), np.int64))
        T_b, F_b, G_b = red(tp), red(fp), red(ignored)
        entries = [_entries(T_b[t], F_b[t], b_cls, tp[t], fp[t], starts, n) for t in range(n_iou)]
        # the shared "detections before" sums, at the first block of every threshold's entries
        q_blocks = np.unique(np.concatenate([e[0] for e in entries])) if entries else np.zeros(0, np.int64)
        d_all = _between(q_blocks, np.diff(np.r_[starts, n]), b_cls, b_img, (len(q_blocks), n_img))
        ious = []
        for t, (first, e_cls, mixed, d_tp_rows, runs) in enumerate(entries):
            q = np.searchsorted(q_blocks, first)
            d_tp = _counts(d_tp_rows[0], b_img[d_tp_rows[1]], d_tp_rows[2], (len(first), n_img))
            d_ig = _between(first, G_b[t], b_cls, b_img, (len(first), n_img))
            ious.append(_Entries(cls=e_cls, q=q, mixed=mixed, img=b_img[first], T=T_b[t][first], F=F_b[t][first],
                                 d_tp=d_tp, d_ig=d_ig, run_ends=runs))
        return cls(K, n_img, _ngt(records, n_img), d_all, b_cls[q_blocks], ious, n, eps)

    def per_resample(self) -> int:
        """Array elements one resample of a batch costs (to size batches)."""
        return self.d_all.shape[0] + max((len(e.cls) for e in self.ious), default=0) * 4

    def accumulate(self, weights: np.ndarray, rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Precision (B, T, R, K) and recall (B, T, K) for resamples with image ``weights`` (B, I), as the
        backend's accumulate computes them on those resamples (-1 where a class has no ground truth)."""
        B, K, R, T = weights.shape[0], self.n_classes, len(rec_thrs), len(self.ious)
        precision = np.full((B, T, R, K), -1.0)
        recall = np.full((B, T, K), -1.0)
        if K == 0:
            return precision, recall
        max_w = int(weights.max(initial=0))
        exact = np.float32 if self.n_dets * max(max_w, 1) < EXACT_F32 else np.float64
        wt = np.ascontiguousarray(weights.T, dtype=exact)  # (I, B)
        npig = weights @ self.ngt.T  # (B, K)
        has_gt = npig > 0
        kthr = _threshold_counts(rec_thrs, npig)  # (B, K, R)
        a_before = _seg_cumsum(np.asarray(self.d_all.astype(exact) @ wt), self.q_cls, K) if self.d_all.shape[0] \
            else np.zeros((0, B))  # detections before each query block, within its class
        for t, ent in enumerate(self.ious):
            if not len(ent.cls):
                recall[:, t, :] = np.where(has_gt, 0.0, -1.0)
                q = np.zeros((B, K, R))
                q[~has_gt] = -1.0
                precision[:, t] = q.transpose(0, 2, 1)
                continue
            d_tp = np.asarray(ent.d_tp.astype(exact) @ wt)  # (E, B)
            tp_incl = _seg_cumsum(d_tp, ent.cls, K)
            tp_before = tp_incl - d_tp
            ig_before = _seg_cumsum(np.asarray(ent.d_ig.astype(exact) @ wt), ent.cls, K) if ent.d_ig.nnz else 0.0
            fp_before = a_before[ent.q] - tp_before - ig_before
            total = np.zeros((K, B))
            last = np.searchsorted(ent.cls, np.arange(K), side="right") - 1
            has = (last >= 0) & (ent.cls[np.maximum(last, 0)] == np.arange(K))
            total[has] = tp_incl[last[has]]
            with np.errstate(divide="ignore", invalid="ignore"):
                recall[:, t, :] = np.where(has_gt, total.T / np.where(has_gt, npig, 1), -1.0)
            src, copy, etp, efp, elast = ent.layout(max_w)
            cum_tp = tp_incl[src].T.astype(np.int64)  # (B, P): a run's point is its end
            cum_fp = fp_before[src].T.astype(np.int64)
            m = ent.mixed[src]
            if m.any():
                e = src[m]
                w = weights[:, ent.img[e]]
                tb, fb = tp_before[e].T.astype(np.int64), fp_before[e].T.astype(np.int64)
                c = copy[m]
                live = c < w
                m_tp = np.where(live, tb + c * ent.T[e] + etp[m], tb + w * ent.T[e])
                m_fp = np.where(live, fb + c * ent.F[e] + efp[m], fb + np.maximum(w - 1, 0) * ent.F[e] + elast[m])
                cum_tp[:, m] = np.where(w == 0, tb, m_tp)
                cum_fp[:, m] = np.where(w == 0, fb, m_fp)
            den = (cum_tp + cum_fp).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                prec = np.where(den > 0, cum_tp / (den + self.eps), 0.0)
            q = _read_thresholds(prec, cum_tp, ent.cls[src], kthr, K)
            q[~has_gt] = -1.0
            precision[:, t] = q.transpose(0, 2, 1)
        return precision, recall


def _entries(T, F, b_cls, tp, fp, starts, n):
    """One threshold's entries: (first block of each, class, mixed?, (rows, blocks, true positives) of the
    true-positive blocks, run ends of each mixed block's pattern)."""
    pure = (T > 0) & (F == 0)
    mixed = (T > 0) & (F > 0)
    nb = len(T)
    new_cls = np.r_[True, b_cls[1:] != b_cls[:-1]] if nb else np.zeros(0, bool)
    breaker = (F > 0) | new_cls  # a false positive (or a new class) ends a run
    seg = np.cumsum(breaker) - 1
    pure_b = np.flatnonzero(pure)
    mixed_b = np.flatnonzero(mixed)
    # a run: the pure blocks of one segment (no false positive between them); a mixed block on its own
    run_seg, run_first = np.unique(seg[pure_b], return_index=True) if len(pure_b) else (pure_b, pure_b)
    run_start = pure_b[run_first]
    first = np.concatenate([run_start, mixed_b])
    order = np.argsort(first, kind="stable")
    first = first[order]
    is_mixed = np.r_[np.zeros(len(run_start), bool), np.ones(len(mixed_b), bool)][order]
    row_of = np.empty(len(first), np.int64)
    row_of[order] = np.arange(len(first))
    # true-positive rows: each pure block to its run's row, each mixed block to its own
    run_row = row_of[:len(run_start)]
    pure_rows = run_row[np.searchsorted(run_seg, seg[pure_b])] if len(pure_b) else pure_b
    mixed_rows = row_of[len(run_start):]
    rows = np.r_[pure_rows, mixed_rows]
    blocks = np.r_[pure_b, mixed_b]
    ends = np.r_[starts[1:], n]
    runs = []
    for j, b in enumerate(first):
        if not is_mixed[j]:
            runs.append(None)
            continue
        pt, pf = tp[starts[b]:ends[b]], fp[starts[b]:ends[b]]
        ctp, cfp = np.cumsum(pt), np.cumsum(pf)
        counted = np.flatnonzero(pt | pf)
        re = counted[pt[counted] & np.r_[pf[counted[1:]], True]]
        runs.append((ctp[re], cfp[re]))
    return first, b_cls[first], is_mixed, (rows, blocks, T[blocks]), runs


def _between(query_blocks: np.ndarray, per_block: np.ndarray, b_cls: np.ndarray, b_img: np.ndarray, shape):
    """Sparse (query rows x images): ``per_block`` counts of the blocks before each query block and after
    the previous one of its class; summed over rows in class order, the counts before each query block."""
    nb = len(per_block)
    if not len(query_blocks) or not nb:
        return _counts(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), shape)
    blocks = np.flatnonzero(per_block)
    row = np.searchsorted(query_blocks, blocks, side="right")  # the first query block after it
    ok = row < len(query_blocks)
    ok[ok] &= b_cls[query_blocks[row[ok]]] == b_cls[blocks[ok]]  # the same class only
    return _counts(row[ok], b_img[blocks[ok]], per_block[blocks[ok]], shape)


def _threshold_counts(rec_thrs: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """(B, K, R): the smallest integer k with ``k / npig >= thr`` as doubles compare (0 where npig is 0)."""
    n = np.maximum(npig, 1).astype(np.float64)[..., None]
    k = np.ceil(rec_thrs * n)
    k = np.where((k - 1) / n >= rec_thrs, k - 1, k)
    k = np.where(k / n < rec_thrs, k + 1, k)
    return np.maximum(k, 0).astype(np.int64)


def _read_thresholds(prec: np.ndarray, cum_tp: np.ndarray, pcls: np.ndarray, kthr: np.ndarray,
                     K: int) -> np.ndarray:
    """(B, K, R) interpolated precision: at the first point of the class whose true-positive count reaches
    each threshold's k, the maximum of that point's precision and every later one's in the class."""
    B, P = cum_tp.shape
    R = kthr.shape[2]
    big = int(max(cum_tp.max(initial=0), kthr.max(initial=0))) + 1
    seg = (np.arange(B)[:, None] * K + pcls[None, :])  # (B, P) row-major, class-major: increasing
    keys = (seg * big + cum_tp).ravel()
    qseg = (np.arange(B)[:, None] * K + np.arange(K)[None, :])  # (B, K)
    pos = np.searchsorted(keys, (qseg[..., None] * big + kthr).ravel(), side="left")
    cls_end = np.searchsorted(keys, ((qseg + 1) * big).ravel(), side="left")  # first point after each class
    end = np.repeat(cls_end, R)
    ok = pos < end
    bounds = np.minimum(pos, end)  # (B*K*R,) non-decreasing over (row, class, threshold)
    nxt = np.r_[bounds[1:], 0].reshape(B * K, R)
    nxt[:, -1] = cls_end
    nxt = nxt.ravel()
    seg_max = np.full(bounds.shape, -np.inf)
    nonempty = bounds < nxt
    if nonempty.any():  # each nonempty slot ends where the next nonempty one starts: one reduceat
        seg_max[nonempty] = np.maximum.reduceat(prec.ravel(), bounds[nonempty])
    env = np.maximum.accumulate(seg_max.reshape(B * K, R)[:, ::-1], axis=1)[:, ::-1]
    return np.where(ok.reshape(B * K, R), env, 0.0).reshape(B, K, R)


# --------------------------------------------------------------------------------------------- Mean Recall
@dataclass(eq=False)
class RecallTable:
    """The IoU-0.50 / area "all" / maxDets 100 matches without ignored detections, class-major, each class
    in ``validator.metrics.recall``'s order (by score, stable over images in order), with its tie groups
    (same class and score) and the sparse sums of the confidence grid."""

    cat_ids: list[int]
    ngt: np.ndarray  # (K, I)
    g_cls: np.ndarray  # (G,) class of each group
    g_score: np.ndarray  # (G,)
    g_first_tp: np.ndarray  # (G,) the tp flag of each group's first detection
    d_group: object  # sparse (G, I): detections of each group per image (presence)
    mixed_groups: np.ndarray  # groups holding both true and false positives (their first present one varies)
    mixed_pos: np.ndarray  # (G,) index of each group among mixed_groups, -1 for the others
    mixed_dets: tuple  # (det image, det tp, group start offsets) of the mixed groups' detections
    d_tp_grid: object  # sparse (K * GRID, I): true positives with score in [grid_j, grid_j+1)
    d_fp_grid: object
    grid_q: np.ndarray  # (K, GRID): groups (global index) before which the class's scores are >= grid_j
    cls_lo: np.ndarray  # (K,) first group of each class
    cls_hi: np.ndarray  # (K,)
    n_dets: int

    @classmethod
    def build(cls, records: Sequence[Sequence[PerImage | None]], cat_ids: Sequence[int], t50: int,
              max_det: int) -> RecallTable:
        K = len(records)
        n_img = len(records[0]) if K else 0
        img_l, tp_l, score_l, cls_l = [], [], [], []
        for k in range(K):
            g = _gather_class(records[k], max_det)
            if g is None:
                continue
            img, score, matched, ignored = g
            keep = ~ignored[t50]
            img_l.append(img[keep])
            score_l.append(score[keep])
            tp_l.append(matched[t50][keep])
            cls_l.append(np.full(int(keep.sum()), k, np.int64))
        if img_l:
            img, score, tp, cl = (np.concatenate(x) for x in (img_l, score_l, tp_l, cls_l))
        else:
            img = cl = np.zeros(0, np.int64)
            score, tp = np.zeros(0), np.zeros(0, bool)
        n = len(img)
        g_start = np.flatnonzero(np.r_[True, (cl[1:] != cl[:-1]) | (score[1:] != score[:-1])]) if n else \
            np.zeros(0, np.int64)
        G = len(g_start)
        group = np.repeat(np.arange(G), np.diff(np.r_[g_start, n]))
        g_cls, g_score = cl[g_start], score[g_start]
        lo = np.searchsorted(g_cls, np.arange(K))
        hi = np.searchsorted(g_cls, np.arange(K), side="right")
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        q = np.zeros((K, GRID_POINTS), np.int64)
        for k in range(K):  # scores descend within a class: groups with score >= grid_j come first
            q[k] = lo[k] + np.searchsorted(-g_score[lo[k]:hi[k]], -grid, side="right")
        # each detection's grid interval: the largest j with grid_j <= score
        j = np.clip(np.searchsorted(grid, score, side="right") - 1, 0, GRID_POINTS - 1)
        row = cl * GRID_POINTS + j
        ones = np.ones(n)
        g_tp = np.bincount(group, tp, minlength=G)
        g_n = np.bincount(group, minlength=G)
        mixed = np.flatnonzero((g_tp > 0) & (g_tp < g_n))
        sel = np.isin(group, mixed)
        m_start = np.searchsorted(np.flatnonzero(sel), g_start[mixed]) if len(mixed) else mixed
        mixed_pos = np.full(G, -1, np.int64)
        mixed_pos[mixed] = np.arange(len(mixed))
        return cls(list(cat_ids), _ngt(records, n_img), g_cls, g_score, tp[g_start] if n else tp,
                   _counts(group, img, ones, (G, n_img)), mixed, mixed_pos, (img[sel], tp[sel], m_start),
                   _counts(row, img, tp.astype(float), (K * GRID_POINTS, n_img)),
                   _counts(row, img, (~tp).astype(float), (K * GRID_POINTS, n_img)), q, lo, hi, n)

    def per_resample(self) -> int:
        return 2 * len(self.g_cls) + 12 * len(self.cat_ids) * GRID_POINTS

    def curves(self, weights: np.ndarray, at_index: np.ndarray | None = None):
        """Per resample row: (P (C, grid), R (C, grid), category ids with ground truth), the curves
        ``validator.metrics.recall.class_curves`` draws from the expanded (repeated) match list. With
        ``at_index`` (B,): only that grid point of each row (curves of one column: a compared model read at
        the reference's confidence); a row whose index is -1 (the reference had no operating point) is None."""
        B = weights.shape[0]
        K, G = len(self.cat_ids), len(self.g_cls)
        grid_all = np.linspace(0.0, 1.0, GRID_POINTS)
        if at_index is None:
            J, cols = GRID_POINTS, np.broadcast_to(np.arange(GRID_POINTS), (B, GRID_POINTS))
        else:
            J, cols = 1, np.maximum(np.asarray(at_index, np.int64), 0)[:, None]
        npig = weights @ self.ngt.T  # (B, K)
        out_p = np.zeros((B, K, J))
        out_r = np.zeros((B, K, J))
        if at_index is not None:
            keep = np.asarray(at_index) >= 0
        if G:
            exact = np.float32 if self.n_dets * max(int(weights.max(initial=0)), 1) < EXACT_F32 else np.float64
            wt = np.ascontiguousarray(weights.T, dtype=exact)
            present = np.asarray(self.d_group.astype(exact) @ wt) > 0  # (G, B)
            # weighted true / false positives with score >= grid_j (suffix sums over the grid, per class)
            GJ = GRID_POINTS
            tp_all = np.cumsum(np.asarray(self.d_tp_grid.astype(exact) @ wt).reshape(K, GJ, B)[:, ::-1],
                               axis=1)[:, ::-1]
            fp_all = np.cumsum(np.asarray(self.d_fp_grid.astype(exact) @ wt).reshape(K, GJ, B)[:, ::-1],
                               axis=1)[:, ::-1]
            bcol = np.arange(B)[None, :]
            tp_ge = tp_all[:, cols.T, bcol].astype(np.int64)  # (K, J, B)
            fp_ge = fp_all[:, cols.T, bcol].astype(np.int64)
            lo = np.broadcast_to(self.cls_lo[:, None, None], (K, J, B))
            hi = np.broadcast_to(self.cls_hi[:, None, None], (K, J, B))
            start = self.grid_q[:, cols.T]  # (K, J, B)
            h = _nearest_present(present, start - 1, -1, lo, hi)  # the last present group scoring >= grid_j
            h2 = _nearest_present(present, start, +1, lo, hi)  # the first present one below
            hs, h2s = np.maximum(h, 0), np.maximum(h2, 0)
            f2 = self.g_first_tp[h2s].astype(np.int64)  # a group of one kind: any detection's flag
            if len(self.mixed_groups):  # a group mixing both: the flag of its first present detection
                m_img, m_tp, m_start = self.mixed_dets
                where = self.mixed_pos[h2s]  # (K, J, B): index among the mixed groups, -1 if not mixed
                hit = where >= 0
                if hit.any():  # only the mixed groups some grid point reads
                    need = np.unique(where[hit])
                    m_end = np.r_[m_start[1:], len(m_img)]
                    lens = m_end[need] - m_start[need]
                    dets = np.repeat(m_start[need] - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
                    pres = weights[:, m_img[dets]] > 0  # (B, dets of the needed groups)
                    idx = np.where(pres, dets, len(m_img))
                    first = np.minimum.reduceat(idx, np.r_[0, np.cumsum(lens)[:-1]], axis=1)  # (B, needed)
                    slot = np.searchsorted(need, where[hit])
                    b_of = np.broadcast_to(np.arange(B), where.shape)[hit]
                    f2[hit] = m_tp[np.minimum(first[b_of, slot], len(m_img) - 1)]
            npk = np.maximum(npig, 1).T[:, None, :].astype(np.float64)  # (K, 1, B)
            t_lo, f_lo = tp_ge, fp_ge  # the last copy of the last present score >= grid_j
            t_hi, f_hi = tp_ge + f2, fp_ge + (1 - f2)  # the first copy of the next one
            with np.errstate(divide="ignore", invalid="ignore"):
                r_lo, p_lo = t_lo / npk, t_lo / (t_lo + f_lo)
                r_hi, p_hi = t_hi / npk, t_hi / (t_hi + f_hi)
                x = -grid_all[cols.T][None]
                x_lo, x_hi = -self.g_score[hs], -self.g_score[h2s]
                r_mid = (r_hi - r_lo) / (x_hi - x_lo) * (x - x_lo) + r_lo
                p_mid = (p_hi - p_lo) / (x_hi - x_lo) * (x - x_lo) + p_lo
            at = x == x_lo
            r_mid = np.where(at, r_lo, r_mid)
            p_mid = np.where(at, p_lo, p_mid)
            rr = np.where(h < 0, 0.0, np.where(h2 < 0, r_lo, r_mid))
            pp = np.where(h < 0, 1.0, np.where(h2 < 0, p_lo, p_mid))
            # a class with ground truth but no detection in the resample: 0 everywhere (class_curves)
            some = np.zeros((K, B), bool)
            nonempty = self.cls_lo < self.cls_hi
            if nonempty.any():
                some[nonempty] = np.logical_or.reduceat(present, self.cls_lo[nonempty], axis=0)
            rr = np.where(some[:, None, :], rr, 0.0)
            pp = np.where(some[:, None, :], pp, 0.0)
            out_r, out_p = rr.transpose(2, 0, 1), pp.transpose(2, 0, 1)
        res = []
        for b in range(B):
            ids = np.flatnonzero(npig[b] > 0)
            if at_index is not None and not keep[b]:
                res.append(None)
                continue
            res.append((np.ascontiguousarray(out_p[b, ids]), np.ascontiguousarray(out_r[b, ids]),
                        [self.cat_ids[k] for k in ids]))
        return res


def _nearest_present(present: np.ndarray, pos: np.ndarray, step: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each start position (any shape, last axis = resample b), the first group at pos, pos + step, ...
    within [lo, hi) that is present in resample b, else -1. Most groups are present (a group is absent only
    when every image holding it was left out), so a few steps settle nearly every position."""
    b = np.broadcast_to(np.arange(present.shape[1]), pos.shape)
    cur = np.array(pos, dtype=np.int64)
    out = np.full(pos.shape, -1, np.int64)
    todo = np.flatnonzero((cur >= lo) & (cur < hi))
    cur, lo, hi, b = cur.ravel(), lo.ravel(), hi.ravel(), b.ravel()
    res = out.ravel()
    while len(todo):
        hit = present[cur[todo], b[todo]]
        res[todo[hit]] = cur[todo[hit]]
        todo = todo[~hit]
        cur[todo] += step
        todo = todo[(cur[todo] >= lo[todo]) & (cur[todo] < hi[todo])]
    return res.reshape(pos.shape)


def operating_point(P: np.ndarray, R: np.ndarray, at_conf: float | None = None) -> tuple[float, float] | None:
    """(mean recall, confidence) as ``validator.metrics.recall.f1_operating_point`` reads these curves."""
    if P.shape[0] == 0:
        return None
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    f1 = f1_scores(P, R)
    if at_conf is None:
        j = int(np.argmax(box_smooth(f1.mean(axis=0))))
    else:
        j = int(np.argmin(np.abs(grid - float(at_conf))))
    return float(R[:, j].mean()), float(grid[j])
