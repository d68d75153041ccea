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
        n = max([len(s.b_cls) for s in self.slices.values()] + [len(self.recall.det_img) if self.recall else 0, 1])
        return max(1, min(256, BATCH_ELEMENTS // n))

    def coco(self, weights: np.ndarray) -> list[dict]:
        """Per resample row of ``weights`` (B, I): the stats and per-class AP."""
        p = self.params
        B = weights.shape[0]
        T, R, K = len(p.iouThrs), len(p.recThrs), len(p.catIds)
        A, M = len(p.areaRng), len(p.maxDets)
        precision = np.full((B, T, R, K, A, M), -1.0)
        recall = np.full((B, T, K, A, M), -1.0)
        rec_thrs = np.asarray(p.recThrs, np.float64)
        for (a_lbl, m), table in self.slices.items():
            a, mi = p.areaRngLbl.index(a_lbl), p.maxDets.index(m)
            precision[:, :, :, :, a, mi], recall[:, :, :, a, mi] = table.accumulate(weights, rec_thrs)
        out = []
        a0 = p.areaRngLbl.index("all")
        m0 = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
        t50 = int(np.flatnonzero(np.isclose(np.asarray(p.iouThrs), 0.5))[0])
        for b in range(B):
            d = summarize_arrays(precision[b], recall[b], p, self.stats)
            if self.per_class:
                pr = precision[b][:, :, :, a0, m0]
                d["per_class"] = {c: {"AP50": _mean_valid(pr[t50, :, k]), "AP50_95": _mean_valid(pr[:, :, k])}
                                  for k, c in enumerate(self.cat_ids)}
            out.append(d)
        return out

    def recall_curves(self, weights: np.ndarray):
        return self.recall.curves(weights) if self.recall is not None else [None] * weights.shape[0]


def resampled(resamplers: Mapping[str, Resampler], reference: str | None, idx: np.ndarray,
              done: Callable[[], None] = lambda: None) -> dict:
    """``{model: {metric: (B,) array, "per_class": {cat: {"AP50", "AP50_95": (B,)}}}}`` over the rows of
    ``idx``; metrics are fractions (None-valued resamples are NaN). ``mean_recall`` of a model other than
    ``reference`` is read at the reference's F1-optimal confidence of the same resample. ``done()`` once
    per model and resample (progress)."""
    if not resamplers:
        return {}
    n_img = next(iter(resamplers.values())).n_images
    step = min(r.batch_size() for r in resamplers.values())
    cols: dict[str, dict] = {m: {"stats": [], "recall": []} for m in resamplers}
    ordered = ([reference] if reference in resamplers else []) + [m for m in resamplers if m != reference]
    for lo in range(0, len(idx), step):
        w = weights_of(idx[lo:lo + step], n_img)
        ref_conf: list[float | None] = []
        for name in ordered:
            r = resamplers[name]
            stats = r.coco(w)
            curves = r.recall_curves(w)
            recalls = []
            for j, cv in enumerate(curves):
                done()
                if cv is None:
                    recalls.append(None)
                    continue
                P, R, _ids = cv
                if name == reference:
                    op = operating_point(P, R)
                    ref_conf.append(None if op is None else op[1])
                else:
                    conf = ref_conf[j] if ref_conf else None
                    op = operating_point(P, R, at_conf=conf)
                recalls.append(None if op is None else op[0])
            cols[name]["stats"].extend(stats)
            cols[name]["recall"].extend(recalls)
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
