"""Bootstrap over images: how much of a metric (or of a difference between two models) is resampling noise.

Why: a nightly gate must catch a real INT8 regression and not cry wolf over noise; on a few hundred images
mAP moves by a point or more just from which images were drawn. The images are resampled with replacement
B times (seeded), the same resampled sets for every model, so a difference between two models is paired;
each resample's metrics are recomputed from the per-image matching results the evaluation already made,
never by re-running COCOeval from scratch:

* COCO AP/AR: faster-coco-eval's per-image evaluations (its C++ ``ImageEvaluation`` handles, kept from a
  ``separate_eval`` run) are re-picked for the resampled images and handed to its own C++ ``accumulate``;
  the 12 stats and per-class AP are then read from the precision/recall arrays exactly as COCO's
  ``summarize`` averages them. The AP computation stays the backend's.
* Mean Recall: the IoU-0.50 matches (per detection: image, class, score, TP) are weighted by how often
  each image was drawn, and :func:`validator.metrics.recall.f1_operating_point` is read on them; a compared
  model is read at the reference's F1-optimal confidence of the same resample (the paired Mean Recall).

An image drawn twice counts twice (its detections and ground truth both), as the bootstrap requires.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from validator.metrics.recall import ClassMatches, f1_operating_point

DEFAULT_RESAMPLES = 500


def resample_indices(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) image indices drawn with replacement; the same for every model of a run."""
    return np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))


def _mean_valid(s: np.ndarray) -> float | None:
    v = s[s > -1]
    return float(v.mean()) if v.size else None


def summarize_arrays(precision: np.ndarray, recall: np.ndarray, params: Any) -> dict[str, float | None]:
    """The 12 COCO stats from accumulate's arrays, averaged as COCOeval.summarize does."""
    from validator.metrics.cocoeval import STAT_NAMES

    area = {lbl: i for i, lbl in enumerate(params.areaRngLbl)}
    mdet = {m: i for i, m in enumerate(params.maxDets)}
    thr = np.asarray(params.iouThrs)

    def ap(t=None, a="all", m=100):
        s = precision[:, :, :, area[a], mdet[m]]
        if t is not None:
            s = s[np.flatnonzero(np.isclose(thr, t))]
        return _mean_valid(s)

    def ar(a="all", m=100):
        return _mean_valid(recall[:, :, area[a], mdet[m]])

    values = [ap(), ap(0.5), ap(0.75), ap(a="small"), ap(a="medium"), ap(a="large"),
              ar(m=params.maxDets[0]), ar(m=params.maxDets[1]), ar(), ar("small"), ar("medium"), ar("large")]
    return dict(zip(STAT_NAMES, values, strict=True))


@dataclass(eq=False)
class Resampler:
    """What one evaluation keeps to be re-read on resampled image sets."""

    eval_imgs: np.ndarray  # object array (K, A, I) of faster-coco-eval ImageEvaluation handles
    params: Any  # the evaluation's params (a copy)
    cat_ids: list[int]
    det_image: np.ndarray  # IoU-0.50 matches: image index (0..I-1) of each counted detection
    det_cat: np.ndarray
    det_score: np.ndarray
    det_tp: np.ndarray
    gt_image: np.ndarray  # non-crowd ground truth: image index and category
    gt_cat: np.ndarray

    def coco(self, idx: np.ndarray) -> dict:
        """12 stats and per-class AP on the resampled images ``idx`` (image indices, with repeats)."""
        import faster_coco_eval.faster_eval_api_cpp as _C

        p = copy.copy(self.params)
        p.imgIds = [int(v) for v in np.asarray(self.params.imgIds)[idx]]
        sel = self.eval_imgs[:, :, idx].ravel().tolist()
        res = _C.COCOevalAccumulate(p, sel)
        prec, rec = np.asarray(res["precision"]), np.asarray(res["recall"])
        out: dict = summarize_arrays(prec, rec, p)
        a = p.areaRngLbl.index("all")
        m = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
        t = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
        out["per_class"] = {int(c): {"AP50": _mean_valid(prec[t, :, k, a, m]),
                                     "AP50_95": _mean_valid(prec[:, :, k, a, m])} for k, c in enumerate(self.cat_ids)}
        return out

    def classes(self, idx: np.ndarray) -> dict[int, ClassMatches]:
        """IoU-0.50 matches per class on the resampled images (each drawn image counted as often as drawn)."""
        counts = np.bincount(idx, minlength=len(self.params.imgIds))
        w = counts[self.det_image]
        gw = counts[self.gt_image]
        out = {}
        for c in self.cat_ids:
            sel = self.det_cat == c
            n_gt = int(gw[self.gt_cat == c].sum())
            ww = w[sel]
            if not ww.sum() and not n_gt:
                continue
            out[int(c)] = ClassMatches(np.repeat(self.det_score[sel], ww), np.repeat(self.det_tp[sel], ww), n_gt)
        return out


def resampled(resamplers: dict[str, Resampler], reference: str | None, idx: np.ndarray, done=lambda: None) -> dict:
    """``{model: {metric: (B,) array, "per_class": {cat: {"AP50", "AP50_95": (B,)}}}}`` over the rows of
    ``idx``; metrics are fractions (None-valued resamples are NaN). ``mean_recall`` of a model other than
    ``reference`` is read at the reference's F1-optimal confidence of the same resample."""
    out: dict = {}
    ref_conf = []
    if reference in resamplers:
        ops = [f1_operating_point(resamplers[reference].classes(row)) for row in idx]
        ref_conf = [None if op is None else op.conf for op in ops]
    for name, r in resamplers.items():
        stats: dict[str, list] = {}
        per_class: dict[int, dict[str, list]] = {}
        recalls = []
        for b, row in enumerate(idx):
            s = r.coco(row)
            for k, v in s.items():
                if k == "per_class":
                    for c, pc in v.items():
                        for kk, vv in pc.items():
                            per_class.setdefault(c, {}).setdefault(kk, []).append(np.nan if vv is None else vv)
                else:
                    stats.setdefault(k, []).append(np.nan if v is None else v)
            conf = ref_conf[b] if (name != reference and ref_conf) else None
            op = f1_operating_point(r.classes(row), at_conf=conf)
            recalls.append(np.nan if op is None else op.recall)
            done()
        out[name] = {k: np.asarray(v, float) for k, v in stats.items()}
        out[name]["mean_recall"] = np.asarray(recalls, float)
        out[name]["per_class"] = {c: {k: np.asarray(v, float) for k, v in pc.items()} for c, pc in per_class.items()}
    return out
