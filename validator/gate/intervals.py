"""Bootstrap over images: how much of a metric (or of a difference between two models) is resampling noise.

Why: a nightly gate must catch a real INT8 regression and not cry wolf over noise; on a few hundred images
mAP moves by a point or more just from which images were drawn. The images are resampled with replacement
B times (seeded), the same resampled sets for every model, so a difference between two models is paired.
Each resample's metrics are recomputed from the matches the evaluation already made, never by running
COCOeval again: :mod:`validator.gate.resampled_coco` computes a batch of resamples' precision/recall
arrays from the backend's per-image evaluations, equal to the backend's own ``accumulate`` on each
resample (the 12 stats and per-class AP then read as COCO's ``summarize`` averages them), and Mean Recall
from the IoU-0.50 matches weighted by how often each image was drawn (a compared model read at the
reference's F1-optimal confidence of the same resample: the paired Mean Recall).

An image drawn twice counts twice (its detections and ground truth both), as the bootstrap requires. Only
what the gate's checks ask for is computed: the (area range, maxDets) slices their metrics read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from validator.gate.resampled_coco import BATCH_ELEMENTS, RecallTable, SliceTable, operating_point, weights_of
from validator.metrics.recall import GRID_POINTS

# metric -> (area label, maxDets, "precision" | "recall"); mean_recall / f1 come from the IoU-0.50 matches
STAT_SLICES = {
    "mAP50_95": ("all", 100, "precision"), "mAP50": ("all", 100, "precision"), "mAP75": ("all", 100, "precision"),
    "AP_small": ("small", 100, "precision"), "AP_medium": ("medium", 100, "precision"),
    "AP_large": ("large", 100, "precision"), "AR1": ("all", 1, "recall"), "AR10": ("all", 10, "recall"),
    "AR100": ("all", 100, "recall"), "AR_small": ("small", 100, "recall"), "AR_medium": ("medium", 100, "recall"),
    "AR_large": ("large", 100, "recall"),
}
PER_CLASS_SLICE = ("all", 100)


def resample_indices(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) image indices drawn with replacement, each row sorted; the same for every
    model of a run. Sorted rows: a resample's order decides COCO's tie-breaking among equal scores, and
    sorted it breaks ties as the full evaluation does (images in id order), not by the order of the draw."""
    return np.sort(np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images)), axis=1)


def _mean_valid(s: np.ndarray) -> float | None:
    v = s[s > -1]
    return float(v.mean()) if v.size else None


def summarize_arrays(precision: np.ndarray, recall: np.ndarray, params, names: Iterable[str]) -> dict:
    """The named COCO stats from accumulate's arrays (T x R x K x A x M, T x K x A x M), averaged as
    COCOeval.summarize does."""
    area = {lbl: i for i, lbl in enumerate(params.areaRngLbl)}
    mdet = {m: i for i, m in enumerate(params.maxDets)}
    thr = np.asarray(params.iouThrs)
    out = {}
    for name in names:
        a_lbl, m, kind = STAT_SLICES[name]
        if kind == "precision":
            s = precision[:, :, :, area[a_lbl], mdet[m]]
            t = {"mAP50": 0.5, "mAP75": 0.75}.get(name)
            if t is not None:
                s = s[np.flatnonzero(np.isclose(thr, t))]
        else:
            s = recall[:, :, area[a_lbl], mdet[m]]
        out[name] = _mean_valid(s)
    return out


@dataclass(eq=False)
class Resampler:
    """One evaluation's match tables, built once, read on batches of resamples."""

    params: object
    cat_ids: list[int]
    slices: dict[tuple[str, int], SliceTable]  # (area label, maxDets) -> table
    recall: RecallTable | None
    stats: tuple[str, ...]
    per_class: bool

    @classmethod
    def from_images(cls, images, stats: Iterable[str], per_class: bool = True, mean_recall: bool = True,
                    max_det: int = 100) -> Resampler:
        """``images``: a :class:`validator.metrics.cocoeval.ImageEvaluations`; ``stats``: the COCO stats
        the gate reads (STAT_SLICES keys)."""
        p = images.params
        stats = tuple(s for s in stats if s in STAT_SLICES)
        wanted = {STAT_SLICES[s][:2] for s in stats} | ({PER_CLASS_SLICE} if per_class else set())
        by_area: dict[str, list] = {}
        slices = {}
        n_iou = len(p.iouThrs)
        for a_lbl, m in sorted(wanted):
            if a_lbl not in by_area:
                by_area[a_lbl] = images.records(p.areaRngLbl.index(a_lbl))
            slices[(a_lbl, m)] = SliceTable.build(by_area[a_lbl], n_iou, m, images.eps)
        rec = None
        if mean_recall:
            if "all" not in by_area:
                by_area["all"] = images.records(p.areaRngLbl.index("all"))
            t50 = int(np.flatnonzero(np.isclose(np.asarray(p.iouThrs), 0.5))[0])
            rec = RecallTable.build(by_area["all"], [int(c) for c in p.catIds], t50, max_det)
        return cls(p, [int(c) for c in p.catIds], slices, rec, stats, per_class)

    @property
    def n_images(self) -> int:
        return len(self.params.imgIds)

    def batch_size(self) -> int:
        n = max([s.per_resample() for s in self.slices.values()] + [self.recall.per_resample() if self.recall
                                                                     else 0, 1])
        return max(1, min(256, BATCH_ELEMENTS // n))

    def coco(self, weights: np.ndarray) -> list[dict]:
        """Per resample row of ``weights`` (B, I): the stats and per-class AP, averaged as COCO's summarize
        averages its arrays (per class: every recall threshold of a class is defined, or none is)."""
        p = self.params
        B, K = weights.shape[0], len(p.catIds)
        rec_thrs = np.asarray(p.recThrs, np.float64)
        t50 = int(np.flatnonzero(np.isclose(np.asarray(p.iouThrs), 0.5))[0])
        thr = np.asarray(p.iouThrs)
        out: list[dict] = [{} for _ in range(B)]
        for key, table in self.slices.items():
            prec, rec = table.accumulate(weights, rec_thrs)  # (B, T, R, K), (B, T, K)
            for name in self.stats:
                a_lbl, m, kind = STAT_SLICES[name]
                if (a_lbl, m) != key:
                    continue
                t = {"mAP50": 0.5, "mAP75": 0.75}.get(name)
                for b in range(B):
                    if kind == "recall":
                        out[b][name] = _mean_valid(rec[b])
                    else:
                        s = prec[b] if t is None else prec[b][np.flatnonzero(np.isclose(thr, t))]
                        out[b][name] = _mean_valid(s)
            if self.per_class and key == PER_CLASS_SLICE:
                valid = prec[:, 0, 0, :] > -1  # (B, K)
                ap50 = np.ascontiguousarray(prec[:, t50].transpose(0, 2, 1)).mean(axis=2)  # rows of R values
                ap = np.ascontiguousarray(prec.transpose(0, 3, 1, 2)).reshape(B, K, -1).mean(axis=2)
                for b in range(B):
                    out[b]["per_class"] = {c: {"AP50": float(ap50[b, k]) if valid[b, k] else None,
                                               "AP50_95": float(ap[b, k]) if valid[b, k] else None}
                                           for k, c in enumerate(self.cat_ids)}
        return out

    def recall_curves(self, weights: np.ndarray, at_index: np.ndarray | None = None):
        if self.recall is None:
            return [None] * weights.shape[0]
        return self.recall.curves(weights, at_index)


def resampled(resamplers: Mapping[str, Resampler], reference: str | None, idx: np.ndarray,
              done: Callable[[], None] = lambda: None, threads: int = 2) -> dict:
    """``{model: {metric: (B,) array, "per_class": {cat: {"AP50", "AP50_95": (B,)}}}}`` over the rows of
    ``idx``; metrics are fractions (None-valued resamples are NaN). ``mean_recall`` of a model other than
    ``reference`` is read at the reference's F1-optimal confidence of the same resample (only that grid
    point of its curves is computed). The models of a batch run in ``threads`` threads (numpy and scipy
    release the GIL). ``done()`` once per model and resample (progress)."""
    from concurrent.futures import ThreadPoolExecutor

    if not resamplers:
        return {}
    n_img = next(iter(resamplers.values())).n_images
    step = min(r.batch_size() for r in resamplers.values())
    cols: dict[str, dict] = {m: {"stats": [], "recall": []} for m in resamplers}
    ref = reference if reference in resamplers else None
    grid = np.linspace(0.0, 1.0, GRID_POINTS)

    def own(name, w):
        r = resamplers[name]
        stats = r.coco(w)
        rec = None
        if name == ref or ref is None:  # its own optimum: the whole curve
            rec = []
            for cv in r.recall_curves(w):
                op = None if cv is None else operating_point(cv[0], cv[1])
                rec.append(op)
        return stats, rec

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for lo in range(0, len(idx), step):
            w = weights_of(idx[lo:lo + step], n_img)
            first = dict(zip(resamplers, pool.map(lambda n, w=w: own(n, w), list(resamplers)), strict=True))
            at = None
            if ref is not None:
                confs = [None if op is None else op[1] for op in first[ref][1]]
                at = np.array([-1 if c is None else int(np.argmin(np.abs(grid - c))) for c in confs])

            def paired(name, w=w, at=at):
                return [None if cv is None else (float(cv[1][:, 0].mean()) if cv[1].shape[0] else None)
                        for cv in resamplers[name].recall_curves(w, at)]

            others = [n for n in resamplers if first[n][1] is None]
            for name, rec in zip(others, pool.map(paired, others), strict=True):
                first[name] = (first[name][0], rec)
            for name in resamplers:
                stats, rec = first[name]
                cols[name]["stats"].extend(stats)
                cols[name]["recall"].extend([None if v is None else (v[0] if isinstance(v, tuple) else v)
                                             for v in rec])
                for _ in stats:
                    done()
    out: dict = {}
    for name, c in cols.items():
        rows = c["stats"]
        d: dict = {}
        for k in resamplers[name].stats:
            d[k] = np.asarray([np.nan if r[k] is None else r[k] for r in rows], float)
        d["mean_recall"] = np.asarray([np.nan if v is None else v for v in c["recall"]], float)
        if resamplers[name].per_class:
            d["per_class"] = {cid: {key: np.asarray([np.nan if r["per_class"][cid][key] is None
                                                     else r["per_class"][cid][key] for r in rows], float)
                                    for key in ("AP50", "AP50_95")}
                              for cid in resamplers[name].cat_ids}
        out[name] = d
    return out


def samples_for(results: Mapping[str, Mapping], reference: str | None, n_images: int, resamples: int, seed: int,
                stats: Iterable[str], quiet: bool = False) -> dict | None:
    """``samples[model][iou_type]`` for the gate (``validator.gate.checks``): every evaluation that kept its
    per-image evaluations, resampled on the same image sets; ``stats``: the COCO stats the checks read."""
    from validator.progress import Progress

    if resamples <= 0:
        return None
    idx = resample_indices(n_images, resamples, seed)
    stats = tuple(stats)
    out: dict = {}
    types = sorted({t for res in results.values() for t in res})
    jobs = [(t, {m: res[t].images for m, res in results.items() if t in res and res[t].images is not None})
            for t in types]
    jobs = [(t, imgs) for t, imgs in jobs if imgs]
    total = sum(len(r) for _, r in jobs) * len(idx)
    with Progress(total, "validate: gate intervals", "resamples", quiet=quiet) as p:
        for t, images in jobs:
            rs = {m: Resampler.from_images(im, stats) for m, im in images.items()}
            ref = reference if reference in rs else None
            for m, s in resampled(rs, ref, idx, done=p.update).items():
                out.setdefault(m, {})[t] = s
    return out or None
