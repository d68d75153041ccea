"""COCO AP/AR and Mean Recall of bootstrap resamples, from the evaluation's own per-image matches.

Why: the gate's intervals re-read an evaluation on B resampled image sets (B = 1000). Handing each resample
to the backend's own ``accumulate`` cost 35 ms at 200 images and grew with the detections (86 of a 94 s
gated run; tens of minutes at COCO scale). Here a resample is a vector of image multiplicities, and the
precision/recall arrays of a batch of resamples are computed at once from match tables built once per
evaluation, equal to the backend's ``accumulate`` on the same resample to the last digit (tests hold both
to it element by element):

* The matches are the backend's: per image and class, each detection's matched and ignored flags at every
  IoU threshold, its score and the image's non-ignored ground truth (:class:`PerImage`, read from
  faster-coco-eval's per-image evaluations or pycocotools' ``evalImgs``). Nothing is matched here.
* Order: COCO concatenates a resample's images in order and stable-sorts by score. Resample rows are
  sorted (:func:`validator.gate.intervals.resample_indices`), so the order is the full evaluation's (by
  score, ties by image, then within the image) with each image's detections repeated as often as the image
  was drawn; a run of detections with one score from one image (a "block") repeats as a whole.
* Precision is only read where the interpolated curve can change: right after a run of true positives
  (after a false positive precision falls at the same recall). So each IoU threshold has "points": one per
  block holding true positives but no false positive (the last of its copies), and, for a block mixing
  both, each run end of each copy (a repeat interleaves them). A point's counts are exact integers: true
  positives before its block (a sum over the blocks holding any), false positives before it (every
  detection before it, one sum over all blocks and the only pass over every detection, minus the true
  positives and ignored ones), plus the block's own. Precision and recall are the backend's own divisions
  of those integers (pycocotools adds ``np.spacing(1)`` to the precision's denominator, faster-coco-eval
  does not); a recall threshold reads the first point whose true-positive count reaches the smallest
  integer k with ``k / npig >= threshold`` (an integer search), and the interpolated precision there is
  the maximum over that point and every later one of its class (maxima between consecutive threshold
  points, then a running maximum over the 101 of them).
* Mean Recall reads the IoU-0.50 / area "all" / maxDets 100 matches without ignored detections, as
  ``validator.metrics.recall`` does; a resample's curves are those of the expanded list, sampled on the
  confidence grid as ``np.interp`` samples it: between the last copy of one present score and the first
  copy of the next, with the same arithmetic (``slope * (x - x0) + y0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from validator.metrics.cocoeval import PerImage
from validator.metrics.recall import GRID_POINTS, box_smooth, f1_scores

BATCH_ELEMENTS = 3_000_000  # resamples x detections per batch


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


# --------------------------------------------------------------------------------------------- AP / AR
@dataclass(eq=False)
class _IouPoints:
    """The points of one IoU threshold (module docstring), in sequence order, class-major."""

    block: np.ndarray  # (P,) block of each point
    cls: np.ndarray  # (P,) class index
    mixed: np.ndarray  # (P,) bool: a run end of a block mixing true and false positives
    e_tp: np.ndarray  # (P,) the block's true positives up to this run end (pure: all of them)
    e_fp: np.ndarray  # (P,) the block's false positives before this run end (pure: 0)
    e_fp_last: np.ndarray  # (P,) false positives before the block's last run end
    T: np.ndarray  # (P,) the block's true positives
    F: np.ndarray  # (P,) the block's false positives
    tp_rank: np.ndarray  # (P,) the block's index among the true-positive blocks
    ig_rank: np.ndarray  # (P,) ignoring blocks before the block
    tp_blocks: np.ndarray  # blocks holding true positives (class-major), and their counts
    tp_counts: np.ndarray
    ig_blocks: np.ndarray  # blocks holding ignored detections, and their counts
    ig_counts: np.ndarray


def _iou_points(tp: np.ndarray, ig: np.ndarray, starts: np.ndarray, b_cls: np.ndarray) -> _IouPoints:
    fp = ~tp & ~ig
    ends = np.r_[starts[1:], len(tp)]
    T = np.add.reduceat(tp.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    F = np.add.reduceat(fp.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    G = np.add.reduceat(ig.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    tp_blocks = np.flatnonzero(T > 0)
    ig_blocks = np.flatnonzero(G > 0)
    rank = np.full(len(starts), -1, np.int64)
    rank[tp_blocks] = np.arange(len(tp_blocks))
    rows = []
    for b in tp_blocks:
        if F[b] == 0:
            rows.append((b, 0, T[b], 0, 0))
            continue
        pt, pf = tp[starts[b]:ends[b]], fp[starts[b]:ends[b]]
        ctp, cfp = np.cumsum(pt), np.cumsum(pf)
        counted = np.flatnonzero(pt | pf)
        run_ends = counted[pt[counted] & np.r_[pf[counted[1:]], True]]
        for j in run_ends:
            rows.append((b, 1, ctp[j], cfp[j], cfp[run_ends[-1]]))
    a = np.array(rows, np.int64).reshape(-1, 5)
    block = a[:, 0]
    return _IouPoints(block=block, cls=b_cls[block], mixed=a[:, 1].astype(bool), e_tp=a[:, 2], e_fp=a[:, 3],
                      e_fp_last=a[:, 4], T=T[block], F=F[block], tp_rank=rank[block],
                      ig_rank=np.searchsorted(ig_blocks, block), tp_blocks=tp_blocks, tp_counts=T[tp_blocks],
                      ig_blocks=ig_blocks, ig_counts=G[ig_blocks])


@dataclass(eq=False)
class SliceTable:
    """Every detection of one (area range, maxDets) slice, all classes, cut into blocks (same class, score
    and image) in COCO's accumulate order, with the points of every IoU threshold."""

    n_classes: int
    ngt: np.ndarray  # (K, I) non-ignored ground truth
    b_cls: np.ndarray  # (nb,) class index of each block
    b_img: np.ndarray  # (nb,) image index of each block
    b_len: np.ndarray  # (nb,) detections in each block
    cls_first: np.ndarray  # (K,) first block of each class (nb where it has none)
    ious: list[_IouPoints]
    eps: float  # added to precision's denominator (pycocotools: np.spacing(1))

    @classmethod
    def build(cls, records: Sequence[Sequence[PerImage | None]], n_iou: int, max_det: int,
              eps: float = 0.0) -> SliceTable:
        """``records[k][i]``: the per-image evaluations of one area range."""
        K = len(records)
        n_img = len(records[0]) if K else 0
        parts = [(k, g) for k in range(K) if (g := _gather_class(records[k], max_det)) is not None]
        if parts:
            cls_ = np.concatenate([np.full(len(g[0]), k, np.int64) for k, g in parts])
            img = np.concatenate([g[0] for _, g in parts])
            score = np.concatenate([g[1] for _, g in parts])
            matched = np.concatenate([g[2] for _, g in parts], axis=1)
            ignored = np.concatenate([g[3] for _, g in parts], axis=1)
        else:
            cls_ = img = np.zeros(0, np.int64)
            score = np.zeros(0)
            matched = ignored = np.zeros((n_iou, 0), bool)
        n = len(cls_)
        starts = np.flatnonzero(np.r_[True, (cls_[1:] != cls_[:-1]) | (img[1:] != img[:-1])
                                      | (score[1:] != score[:-1])]) if n else np.zeros(0, np.int64)
        b_cls = cls_[starts]
        b_len = np.diff(np.r_[starts, n])
        first = np.searchsorted(b_cls, np.arange(K))
        tp = matched & ~ignored
        ious = [_iou_points(tp[t], ignored[t], starts, b_cls) for t in range(n_iou)]
        return cls(K, _ngt(records, n_img), b_cls, img[starts], b_len, first, ious, eps)

    def accumulate(self, weights: np.ndarray, rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Precision (B, T, R, K) and recall (B, T, K) for resamples with image ``weights`` (B, I), as the
        backend's accumulate computes them on those resamples (-1 where a class has no ground truth)."""
        B, K, R, T = weights.shape[0], self.n_classes, len(rec_thrs), len(self.ious)
        precision = np.full((B, T, R, K), -1.0)
        recall = np.full((B, T, K), -1.0)
        if K == 0:
            return precision, recall
        npig = weights @ self.ngt.T  # (B, K)
        has_gt = npig > 0
        kthr = _threshold_counts(rec_thrs, npig)  # (B, K, R)
        wb = weights[:, self.b_img]  # (B, nb): the one gather over every block
        wl = wb * self.b_len
        a_cum = np.cumsum(wl, axis=1)
        a_before = a_cum - wl  # weighted detections before each block, from the slice's start
        a_base = np.zeros((B, K), np.int64)
        some = self.cls_first < len(self.b_cls)
        a_base[:, some] = a_before[:, self.cls_first[some]]
        max_w = int(weights.max(initial=0))
        for t, p in enumerate(self.ious):
            wt = wb[:, p.tp_blocks] * p.tp_counts
            t_cum = np.cumsum(wt, axis=1)
            t_incl = np.c_[np.zeros((B, 1), np.int64), t_cum]  # t_incl[:, j]: TP of the first j TP blocks
            tcls = self.b_cls[p.tp_blocks]
            t_lo = np.searchsorted(tcls, np.arange(K))
            t_hi = np.searchsorted(tcls, np.arange(K), side="right")
            total_tp = t_incl[:, t_hi] - t_incl[:, t_lo]  # (B, K)
            with np.errstate(divide="ignore", invalid="ignore"):
                recall[:, t, :] = np.where(has_gt, total_tp / np.where(has_gt, npig, 1), -1.0)
            q = np.zeros((B, K, R))
            if len(p.block):
                pts = _expand(p, max_w)
                tp_before = t_incl[:, p.tp_rank[pts.src]] - t_incl[:, t_lo[pts.cls]]
                if len(p.ig_blocks):
                    wg = np.c_[np.zeros((B, 1), np.int64), np.cumsum(wb[:, p.ig_blocks] * p.ig_counts, axis=1)]
                    gcls = self.b_cls[p.ig_blocks]
                    ig_before = wg[:, p.ig_rank[pts.src]] - wg[:, np.searchsorted(gcls, pts.cls)]
                else:
                    ig_before = 0
                blk = p.block[pts.src]
                fp_before = a_before[:, blk] - a_base[:, pts.cls] - tp_before - ig_before
                w = wb[:, blk]
                Tp, Fp = p.T[pts.src], p.F[pts.src]
                cum_tp = tp_before + w * Tp  # pure blocks: the last copy; w = 0 leaves a dominated point
                cum_fp = fp_before.copy()
                if pts.mixed.any():
                    m = pts.mixed
                    c = pts.copy[m]
                    live = c < w[:, m]
                    e_tp, e_fp, e_last = p.e_tp[pts.src][m], p.e_fp[pts.src][m], p.e_fp_last[pts.src][m]
                    w_m, tb, fb = w[:, m], tp_before[:, m], fp_before[:, m]
                    m_tp = np.where(live, tb + c * Tp[m] + e_tp, tb + w_m * Tp[m])
                    m_fp = np.where(live, fb + c * Fp[m] + e_fp, fb + np.maximum(w_m - 1, 0) * Fp[m] + e_last)
                    cum_tp[:, m] = np.where(w_m == 0, tb, m_tp)
                    cum_fp[:, m] = np.where(w_m == 0, fb, m_fp)
                den = (cum_tp + cum_fp).astype(np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    prec = np.where(den > 0, cum_tp / (den + self.eps), 0.0)
                q = _read_thresholds(prec, cum_tp, pts.cls, kthr, K)
            q[~has_gt] = -1.0
            precision[:, t] = q.transpose(0, 2, 1)
        return precision, recall


@dataclass(eq=False)
class _Expanded:
    src: np.ndarray  # (P',) index into the _IouPoints arrays
    cls: np.ndarray
    mixed: np.ndarray
    copy: np.ndarray


def _expand(p: _IouPoints, slots: int) -> _Expanded:
    """Points with ``slots`` copies of each mixed block's run ends (copy-major within the block)."""
    n = len(p.block)
    if slots <= 1 or not p.mixed.any():
        return _Expanded(np.arange(n), p.cls, p.mixed, np.zeros(n, np.int64))
    src, copy = [], []
    i = 0
    while i < n:
        if not p.mixed[i]:
            src.append(i)
            copy.append(0)
            i += 1
            continue
        j = i
        while j < n and p.mixed[j] and p.block[j] == p.block[i]:
            j += 1
        for c in range(slots):
            src.extend(range(i, j))
            copy.extend([c] * (j - i))
        i = j
    src = np.asarray(src, np.int64)
    return _Expanded(src, p.cls[src], p.mixed[src], np.asarray(copy, np.int64))


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
    want = (qseg[..., None] * big + kthr).ravel()  # (B*K*R,)
    pos = np.searchsorted(keys, want, side="left")
    cls_end = np.searchsorted(keys, ((qseg + 1) * big).ravel(), side="left")  # first point after each class
    end = np.repeat(cls_end, R)
    ok = pos < end
    flat = prec.ravel()
    # maxima of [pos_r, pos_{r+1}) and then of the class's tail, as a running maximum over r from the end
    bounds = np.minimum(pos, end)  # (B*K*R,) non-decreasing within each (row, class)
    seg_max = np.full(bounds.shape, -np.inf)
    nxt = np.r_[bounds[1:], 0].reshape(B * K, R)
    nxt[:, -1] = cls_end
    nxt = nxt.ravel()
    nonempty = bounds < nxt
    if nonempty.any():
        starts = bounds[nonempty]
        red = np.maximum.reduceat(flat, starts) if len(flat) else starts
        # reduceat reads each start to the next start in its list: cut at this slot's own end instead
        stops = nxt[nonempty]
        follows = np.r_[starts[1:], len(flat)]
        exact = stops == follows
        if not exact.all():
            for j in np.flatnonzero(~exact):
                red[j] = flat[starts[j]:stops[j]].max()
        seg_max[nonempty] = red
    env = np.maximum.accumulate(seg_max.reshape(B * K, R)[:, ::-1], axis=1)[:, ::-1]
    q = np.where(ok.reshape(B * K, R), env, 0.0)
    return q.reshape(B, K, R)


# --------------------------------------------------------------------------------------------- Mean Recall
@dataclass(eq=False)
class RecallTable:
    """The IoU-0.50 / area "all" / maxDets 100 matches without ignored detections, class-major, each class
    in ``validator.metrics.recall``'s order (by score, stable over images in order), with its tie groups."""

    cat_ids: list[int]
    det_img: np.ndarray
    det_tp: np.ndarray
    g_start: np.ndarray  # (G,) first detection of each tie group (same class and score)
    g_cls: np.ndarray  # (G,) class index of each group
    g_score: np.ndarray  # (G,)
    ngt: np.ndarray  # (K, I)
    grid_pos: np.ndarray  # (K, GRID): groups of class k with score >= grid[j] (class-relative count)
    cls_lo: np.ndarray  # (K,) first group of each class
    cls_hi: np.ndarray  # (K,)

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
        g_cls, g_score = cl[g_start], score[g_start]
        lo = np.searchsorted(g_cls, np.arange(K))
        hi = np.searchsorted(g_cls, np.arange(K), side="right")
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        pos = np.zeros((K, GRID_POINTS), np.int64)
        for k in range(K):  # scores descend within a class: groups with score >= x
            pos[k] = np.searchsorted(-g_score[lo[k]:hi[k]], -grid, side="right")
        return cls(list(cat_ids), img, tp, g_start, g_cls, g_score, _ngt(records, n_img), pos, lo, hi)

    def curves(self, weights: np.ndarray):
        """Per resample row: (P (C, grid), R (C, grid), category ids with ground truth), the curves
        ``validator.metrics.recall.class_curves`` draws from the expanded (repeated) match list."""
        B = weights.shape[0]
        K, G = len(self.cat_ids), len(self.g_start)
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        npig = weights @ self.ngt.T  # (B, K)
        out_p = np.zeros((B, K, GRID_POINTS))
        out_r = np.zeros((B, K, GRID_POINTS))
        if G:
            dw = weights[:, self.det_img]  # (B, n)
            g_tp = np.add.reduceat(dw * self.det_tp, self.g_start, axis=1)
            g_n = np.add.reduceat(dw, self.g_start, axis=1)
            g_fp = g_n - g_tp
            present = g_n > 0
            n = dw.shape[1]
            first = np.minimum.reduceat(np.where(dw > 0, np.arange(n), n), self.g_start, axis=1)
            first_tp = self.det_tp[np.minimum(first, n - 1)].astype(np.int64)
            c_tp, c_fp = np.cumsum(g_tp, axis=1), np.cumsum(g_fp, axis=1)
            base_tp = np.c_[np.zeros((B, 1), np.int64), c_tp][:, self.cls_lo]  # (B, K)
            base_fp = np.c_[np.zeros((B, 1), np.int64), c_fp][:, self.cls_lo]
            end_tp = c_tp - base_tp[:, self.g_cls]
            end_fp = c_fp - base_fp[:, self.g_cls]
            start_tp = end_tp - g_tp + first_tp
            start_fp = end_fp - g_fp + (1 - first_tp)
            # last present group at or before each position, first present group from each position on
            ar = np.arange(G)
            last = np.maximum.accumulate(np.where(present, ar, -1), axis=1)
            nxt = np.minimum.accumulate(np.where(present, ar, G)[:, ::-1], axis=1)[:, ::-1]
            q = self.cls_lo[:, None] + self.grid_pos  # (K, GRID): groups before q have score >= grid
            h = np.where(q[None] > 0, last[:, np.maximum(q - 1, 0)], -1)  # (B, K, GRID)
            h = np.where(h >= self.cls_lo[None, :, None], h, -1)
            h2 = np.where(q[None] < G, nxt[:, np.minimum(q, G - 1)], G)
            h2 = np.where(h2 < self.cls_hi[None, :, None], h2, -1)
            rows = np.arange(B)[:, None, None]
            hs, h2s = np.maximum(h, 0), np.maximum(h2, 0)
            npk = np.maximum(npig, 1)[:, :, None].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                r_lo = end_tp[rows, hs] / npk
                p_lo = end_tp[rows, hs] / (end_tp[rows, hs] + end_fp[rows, hs])
                r_hi = start_tp[rows, h2s] / npk
                p_hi = start_tp[rows, h2s] / (start_tp[rows, h2s] + start_fp[rows, h2s])
                x = -grid[None, None, :]
                x_lo, x_hi = -self.g_score[hs], -self.g_score[h2s]
                r_mid = (r_hi - r_lo) / (x_hi - x_lo) * (x - x_lo) + r_lo
                p_mid = (p_hi - p_lo) / (x_hi - x_lo) * (x - x_lo) + p_lo
            exact = x == x_lo
            r_mid = np.where(exact, r_lo, r_mid)
            p_mid = np.where(exact, p_lo, p_mid)
            out_r = np.where(h < 0, 0.0, np.where(h2 < 0, r_lo, r_mid))
            out_p = np.where(h < 0, 1.0, np.where(h2 < 0, p_lo, p_mid))
            # a class with ground truth but no detection in the resample: 0 everywhere (class_curves)
            none = (np.add.reduceat(present.astype(np.int64), self.cls_lo, axis=1) if G else 0) == 0
            empty_cls = self.cls_lo >= self.cls_hi
            none = none | empty_cls[None, :]
            out_r[none] = 0.0
            out_p[none] = 0.0
        res = []
        for b in range(B):
            ids = np.flatnonzero(npig[b] > 0)
            res.append((np.ascontiguousarray(out_p[b, ids]), np.ascontiguousarray(out_r[b, ids]),
                        [self.cat_ids[k] for k in ids]))
        return res


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
