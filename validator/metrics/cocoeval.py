"""COCO evaluation (``--metric coco``), pycocotools-exact, with the backend chosen by name.

Why two backends: pycocotools is the reference, faster-coco-eval is the same algorithm in C++ and several
times faster on real data. Both are imported lazily, only when picked (torchmetrics' ``backend=`` style),
and both give the same 12 stats on the same inputs, up to an ulp: pycocotools divides precision by
``tp + fp + np.spacing(1)``, faster-coco-eval by ``tp + fp``. Everything beyond the 12 stats (per-class AP,
Mean Recall) is computed by one code path from what both backends expose: the accumulated
``eval['precision']`` array (same T x R x K x A x M layout in both) and per-image match records at
IoU 0.50 / area "all" / maxDets 100 (pycocotools' ``evalImgs``; for faster-coco-eval, which keeps its
per-image records in C++, the ``eval['matched']`` pairs of a second, single-threshold run, see
``_faster_classes``).

Inputs: detections are COCO results dicts. For ``segm`` the RLE ``segmentation`` is passed on together with
the ``bbox`` when there is one, exactly as a results file holds them: pycocotools' ``loadRes`` then takes the
*box* area of a detection for the small/medium/large split (detectron2 drops the box to use the mask area
instead). We keep pycocotools' default so that anyone re-running pycocotools on our predictions file gets
every number we report, as Ultralytics' own COCO evaluation of seg models does too.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from validator.metrics.recall import ClassMatches, ImageMatches, collect, f1_operating_point


class Backend(str, Enum):
    FASTER = "faster-coco-eval"
    PYCOCOTOOLS = "pycocotools"


class IouType(str, Enum):
    BBOX = "bbox"
    SEGM = "segm"


class Metric(str, Enum):
    """Which reading of the detections: COCO's (default), Ultralytics' ``val`` (compat) or EdgeFirst's."""

    COCO = "coco"
    COMPAT = "compat"
    EDGEFIRST = "edgefirst"


# COCOeval.stats order.
STAT_NAMES: tuple[str, ...] = (
    "mAP50_95", "mAP50", "mAP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip
MATCH_IOU = 0.5  # IoU of the match records behind Mean Recall and per-class AP50


@dataclass(frozen=True)
class CocoResult:
    """Summary of one evaluation. AP/AR are fractions; None where COCO says -1 (no GT in that range).

    ``per_class``: ``{category_id: {"AP50", "AP50_95", "n_gt"}}``, AP None for a class without GT.
    ``mean_recall`` / ``mean_precision`` / ``f1`` / ``f1_conf``: see ``validator.metrics.recall``.
    """

    stats: dict[str, float | None]
    per_class: dict[int, dict[str, Any]]
    mean_recall: float | None
    mean_precision: float | None
    f1: float | None
    f1_conf: float | None
    iou_type: IouType
    backend: Backend
    metric: Metric = Metric.COCO
    classes: dict[int, ClassMatches] | None = field(default=None, repr=False, compare=False)  # IoU-0.5 matches
    images: ImageEvaluations | None = field(default=None, repr=False, compare=False)  # evaluate(keep_images=True)
    curves: dict | None = field(default=None, repr=False, compare=False)  # precision at recall 0:.01:1


@dataclass(frozen=True)
class PerImage:
    """One image's evaluation of one class in one area range as the backend keeps it (detections in the
    backend's order: by score, descending, at most ``maxDets[-1]``)."""

    matched: np.ndarray  # (T, D) bool: matched at IoU threshold t (possibly to a crowd / ignored GT)
    ignored: np.ndarray  # (T, D) bool: the backend ignores the detection at t
    scores: np.ndarray  # (D,) float64
    n_gt: int  # non-ignored ground truth


@dataclass(eq=False)
class ImageEvaluations:
    """The backend's own per-image evaluations of one run, for the bootstrap: the matches every resample is
    recomputed from (``validator.gate.resampled_coco``), read as :class:`PerImage` records.

    faster-coco-eval keeps them in C++ (``ImageEvaluation``, read through its pickle state: matched ids and
    ignore flags per IoU threshold, scores, ground-truth ignore flags); pycocotools as ``evalImgs`` dicts."""

    backend: Backend
    params: Any  # a copy of the evaluation's params (iouThrs, recThrs, areaRng, maxDets, catIds, imgIds)
    handles: Any  # faster: object array (K, A, I) of ImageEvaluation; pycocotools: the evalImgs list

    @property
    def eps(self) -> float:
        """What the backend's accumulate adds to precision's denominator (pycocotools: np.spacing(1))."""
        return float(np.spacing(1)) if self.backend is Backend.PYCOCOTOOLS else 0.0

    def records(self, area: int) -> list[list[PerImage | None]]:
        """``records[k][i]`` of area range index ``area``: None where the backend has no evaluation."""
        p = self.params
        K, A, n_img, T = len(p.catIds), len(p.areaRng), len(p.imgIds), len(p.iouThrs)
        out: list[list[PerImage | None]] = []
        for k in range(K):
            row: list[PerImage | None] = []
            if self.backend is Backend.FASTER:
                for h in self.handles[k, area]:
                    dm, _gm, scores, g_ig, d_ig, _pairs = h.__getstate__()
                    if not scores and not g_ig:
                        row.append(None)
                        continue
                    D = len(scores)
                    row.append(PerImage(np.asarray(dm, np.int64).reshape(T, D) > 0,
                                        np.asarray(d_ig, bool).reshape(T, D), np.asarray(scores, np.float64),
                                        len(g_ig) - sum(g_ig)))
            else:
                for i in range(n_img):
                    e = self.handles[k * A * n_img + area * n_img + i]
                    if e is None:
                        row.append(None)
                        continue
                    D = len(e["dtScores"])
                    row.append(PerImage(np.asarray(e["dtMatches"]).reshape(T, D) > 0,
                                        np.asarray(e["dtIgnore"], bool).reshape(T, D),
                                        np.asarray(e["dtScores"], np.float64),
                                        int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))))
            out.append(row)
        return out


# ------------------------------------------------------------------------------------------ loading
def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


@contextlib.contextmanager
def _quiet():
    """pycocotools prints progress to stdout; keep it off the CLI's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _coco_class(backend: Backend) -> type:
    if backend is Backend.FASTER:
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO
    return COCO


def _copy_dataset(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy deep enough that the backends' in-place edits (ignore flags, RLE caches) stay off the caller's,
    with annotation ids made safe for COCOeval.

    Both backends record a detection's match as the matched annotation's *id*, with 0 meaning "no match"
    (pycocotools' ``dtm > 0``, faster-coco-eval's accumulate likewise): a ground truth with id 0 (CVAT,
    Roboflow and other exporters start at 0) is matched but then counted as a false positive, and
    duplicate ids collapse in the index. Ids are internal to evaluation (results refer to images and
    categories, never to annotation ids), so when any id is < 1 or repeated they are renumbered 1..N in
    file order here; the caller's data keeps its own ids.
    """
    src = data.get("annotations", [])
    renumber = not _ids_safe(src)
    anns = []
    for k, a in enumerate(src):
        a = dict(a)
        if isinstance(a.get("segmentation"), dict):
            a["segmentation"] = dict(a["segmentation"])
        if renumber:
            a["id"] = k + 1
        anns.append(a)
    return {**data, "annotations": anns}


def _from_dataset(data: dict[str, Any], backend: Backend) -> Any:
    COCO = _coco_class(backend)
    if backend is Backend.FASTER:
        return COCO(data, print_function=_noop)
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def load_gt(gt: Mapping[str, Any] | str | Path | Any, backend: Backend | str = Backend.FASTER) -> Any:
    """Ground truth as the backend's COCO object: from a JSON path, an in-memory dict (not re-read from
    disk, copied so evaluation leaves it untouched) or another COCO object (rebuilt from its ``dataset``)."""
    backend = Backend(backend)
    if isinstance(gt, (str, Path)):
        data = _copy_dataset(json.loads(Path(gt).read_text()))
    elif isinstance(gt, Mapping):
        data = _copy_dataset(gt)
    else:
        data = _copy_dataset(gt.dataset)
    return _from_dataset(data, backend)


def as_gt(gt: Any, backend: Backend | str) -> Any:
    """``gt`` itself if it already is this backend's COCO object, else ``load_gt(gt, backend)``."""
    backend = Backend(backend)
    if isinstance(gt, _coco_class(backend)) and _ids_safe(gt.dataset.get("annotations", [])):
        return gt
    return load_gt(gt, backend)


def _ids_safe(anns) -> bool:
    ids = [a.get("id") for a in anns]
    return all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in ids) and len(set(ids)) == len(ids)


def prepare_detections(
    detections: Iterable[Mapping[str, Any]],
    iou_type: IouType,
    gt_image_ids: Iterable[int],
    image_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Fresh, minimal results dicts (loadRes edits its input in place); checks image ids against the GT."""
    known = set(gt_image_ids)
    keep = None if image_ids is None else set(image_ids)
    key = "bbox" if iou_type is IouType.BBOX else "segmentation"
    out = []
    for d in detections:
        image_id = int(d["image_id"])
        if keep is not None and image_id not in keep:
            continue
        if image_id not in known:
            raise ValueError(f"detection on image_id {image_id}, which is not in the ground truth")
        geom = [float(v) for v in d[key]] if key == "bbox" else dict(d[key])
        cat, score = int(d["category_id"]), float(d["score"])
        det = {"image_id": image_id, "category_id": cat, key: geom, "score": score}
        if key == "segmentation" and "bbox" in d:
            det["bbox"] = [float(v) for v in d["bbox"]]
        out.append(det)
    return out


def _faster_results(coco_gt: Any, detections: Iterable[Mapping[str, Any]], iou_type: IouType,
                    image_ids: Sequence[int] | None, owned: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    """faster-coco-eval's results object built in one pass (what ``loadRes`` + ``prepare_detections`` do in
    three): fresh annotation dicts with ``id`` (position + 1), ``area`` (the box's when there is a box,
    as loadRes takes it, else the mask's) and ``iscrowd`` 0; image ids checked against the ground truth.
    Values are used as given (no per-number conversion): a million ``float()`` calls were a tenth of an
    evaluation at COCO scale. ``owned``: the dicts are the caller's to give away (read from a file for
    this evaluation): they are completed in place instead of copied."""
    from faster_coco_eval import COCO
    from pycocotools import mask as mask_utils

    known = set(coco_gt.getImgIds())
    keep = known if image_ids is None else set(image_ids)
    seg = iou_type is IouType.SEGM
    anns = []
    for d in detections:
        image_id = d["image_id"]
        if image_id not in keep:
            if image_id not in known:
                raise ValueError(f"detection on image_id {image_id}, which is not in the ground truth")
            continue
        if owned:
            a = d
            a["id"], a["iscrowd"] = len(anns) + 1, 0
            a.pop("area", None)
        else:
            a = {"image_id": image_id, "category_id": d["category_id"], "score": d["score"], "id": len(anns) + 1,
                 "iscrowd": 0}
        b = d.get("bbox")
        if seg:
            a["segmentation"] = dict(d["segmentation"])
            if b is None:
                b = [float(v) for v in mask_utils.toBbox(a["segmentation"])]
                a["area"] = float(mask_utils.area(a["segmentation"]))
        a["bbox"] = b
        if "area" not in a:
            a["area"] = b[2] * b[3]
        anns.append(a)
    res = COCO(print_function=_noop)
    res.dataset = {"info": {}, "images": list(coco_gt.dataset["images"]), "annotations": anns,
                   "categories": [dict(c) for c in coco_gt.dataset.get("categories", [])]}
    res.createIndex()
    return res, anns


def _load_results(coco_gt: Any, dets: list[dict[str, Any]], backend: Backend) -> Any:
    """The results COCO object; an empty one by hand because pycocotools' loadRes fails on []."""
    if not dets:
        data = {
            "images": list(coco_gt.dataset["images"]),
            "categories": [dict(c) for c in coco_gt.dataset.get("categories", [])],
            "annotations": [],
        }
        return _from_dataset(data, backend)
    if backend is Backend.FASTER:
        return coco_gt.loadRes(dets)
    with _quiet():
        return coco_gt.loadRes(dets)


def check_image_ids(image_ids: Sequence[int] | None, gt_image_ids: Iterable[int]) -> list[int] | None:
    if image_ids is None:
        return None
    ids = sorted({int(i) for i in image_ids})
    unknown = set(ids) - set(gt_image_ids)
    if unknown:
        raise ValueError(f"image_ids not in the ground truth: {sorted(unknown)[:10]}")
    return ids


# ---------------------------------------------------------------------------------------- backends
@dataclass(frozen=True, eq=False)
class _Evaluated:
    """What the common code needs from a backend run."""

    stats: np.ndarray  # the 12 COCOeval.stats
    precision: np.ndarray  # eval['precision'], T x R x K x A x M
    params: Any
    classes: dict[int, ClassMatches]  # IoU-0.50 / area "all" / maxDets 100 matches, pooled per class
    images: ImageEvaluations | None = None  # the per-image evaluations, when asked to keep them


def _iou_index(params: Any, iou: float = MATCH_IOU) -> int:
    hits = np.flatnonzero(np.isclose(np.asarray(params.iouThrs), iou))
    if len(hits) == 0:
        raise ValueError(f"IoU threshold {iou} not among params.iouThrs")
    return int(hits[0])


def _run_pycocotools(coco_gt: Any, coco_dt: Any, iou_type: IouType, img_ids: list[int] | None,
                     keep_images: bool = False) -> _Evaluated:
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        ev = COCOeval(coco_gt, coco_dt, iou_type.value)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    images = ImageEvaluations(Backend.PYCOCOTOOLS, copy.deepcopy(ev._paramsEval), ev.evalImgs) if keep_images \
        else None
    return _Evaluated(np.asarray(ev.stats[:12]), ev.eval["precision"], ev.params, collect(_pycocotools_records(ev)),
                      images)


def _pycocotools_records(ev: Any) -> list[ImageMatches]:
    """Read ``evalImgs`` (laid out category-major, then area range, then image) at area "all"."""
    p = ev.params
    t = _iou_index(p)
    a = p.areaRngLbl.index("all")
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    records = []
    for k in range(len(p.catIds)):
        for i in range(n_img):
            e = ev.evalImgs[k * n_area * n_img + a * n_img + i]
            if e is None:
                continue
            records.append(
                ImageMatches(
                    category_id=int(e["category_id"]),
                    scores=np.asarray(e["dtScores"], dtype=np.float64),
                    matched=np.asarray(e["dtMatches"][t]) > 0,
                    ignored=np.asarray(e["dtIgnore"][t], dtype=bool),
                    n_gt=int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)),
                )
            )
    return records


def _run_faster(coco_gt: Any, coco_dt: Any, iou_type: IouType, img_ids: list[int] | None,
                dets: list[dict] | None = None, keep_images: bool = False) -> _Evaluated:
    from faster_coco_eval import COCOeval_faster

    # Plain COCO: no LVIS rules, no split evaluate/accumulate, no extra (mIoU/mAUC) stats.
    ev = COCOeval_faster(
        coco_gt,
        coco_dt,
        iou_type.value,
        print_function=_noop,
        extra_calc=False,
        lvis_style=False,
        separate_eval=keep_images,  # keeps the per-image evaluations for the bootstrap (same numbers)
    )
    if img_ids is not None:
        ev.params.imgIds = img_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    dets = coco_dt.dataset["annotations"] if dets is None else dets
    classes = _faster_classes(ev, coco_gt, dets)
    images = None
    if keep_images:
        p = ev._paramsEval
        handles = np.empty(len(ev._evalImgs_cpp), dtype=object)
        handles[:] = ev._evalImgs_cpp
        images = ImageEvaluations(Backend.FASTER, copy.deepcopy(p),
                                  handles.reshape(len(p.catIds), len(p.areaRng), len(p.imgIds)))
    return _Evaluated(np.asarray(ev.stats[:12]), ev.eval["precision"], ev.params, classes, images)


def _faster_classes(ev: Any, coco_gt: Any, dets: list[dict]):
    """The IoU-0.50 / area "all" / maxDets 100 matches of one faster-coco-eval evaluation, per class.

    Its per-image results stay in C++ (``ImageEvaluation`` has no Python accessors) and its
    ``eval['matched']`` mixes every threshold and area range. So the backend's own C++ matcher is called
    once more on the datasets and IoUs the evaluation already prepared, with only that threshold, area range
    and maxDets: its ``matched`` ("dtId_gtId") is then exactly that matching, at a fraction of an
    evaluation's cost (no second COCOeval, no second preparation: masks are not encoded again). The rest is
    array work: ``dets`` are the results in ``loadRes`` order (detection id = position + 1); a detection
    matched to a crowd is ignored; an unmatched one is a false positive if it is among its image and class's
    top ``maxDets`` by score (COCO's cap, stable order as COCO's C++ sort).

    Returns ``{category id: ClassMatches}``.
    """
    import faster_coco_eval.faster_eval_api_cpp as _C

    p0 = ev._paramsEval
    a0 = p0.areaRngLbl.index("all")
    max_det = p0.maxDets[-1]
    p = copy.deepcopy(p0)
    p.iouThrs = np.array([p0.iouThrs[_iou_index(p0)]])
    p.areaRng, p.areaRngLbl, p.maxDets = [list(p0.areaRng[a0])], ["all"], [max_det]
    ious = [[ev.ious[img, cat] for cat in p.catIds] for img in p.imgIds]
    res = _C.COCOevalEvaluateAccumulate(p, ious, ev.gt_dataset, ev.dt_dataset, p.imgIds, p.catIds, bool(p.useCats))
    matched = res["matched"]

    n = len(dets)
    img = np.fromiter((d["image_id"] for d in dets), np.int64, n)
    cat = np.fromiter((d["category_id"] for d in dets), np.int64, n)
    score = np.fromiter((d["score"] for d in dets), np.float64, n)
    gt_of = np.zeros(n, np.int64)  # matched GT id, 0 = none
    if matched:
        pairs = np.array([k.split("_", 1) for k in matched], dtype=np.int64)
        gt_of[pairs[:, 0] - 1] = pairs[:, 1]

    anns = coco_gt.dataset["annotations"]
    gt_id = np.fromiter((a["id"] for a in anns), np.int64, len(anns))
    gt_crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, len(anns))
    # looked up by id through a sorted copy, never an array indexed by id: val2017's crowd ids are ~9e11
    by_id = np.argsort(gt_id, kind="stable")
    ignored = np.zeros(n, bool)
    hit = np.flatnonzero(gt_of > 0)
    if len(hit):
        pos = by_id[np.searchsorted(gt_id, gt_of[hit], sorter=by_id)]
        ignored[hit] = gt_crowd[pos]

    cats = np.asarray(p.catIds, np.int64)
    imgs = np.asarray(p.imgIds, np.int64)
    keep = np.isin(img, imgs) & np.isin(cat, cats)
    # rank of each detection within its (image, category) by descending score, ties in id order
    order = np.lexsort((np.arange(n), -score, cat, img))
    o_img, o_cat = img[order], cat[order]
    start = np.r_[True, (o_img[1:] != o_img[:-1]) | (o_cat[1:] != o_cat[:-1])]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - first
    keep &= (rank < max_det) & ~ignored

    g_img = np.fromiter((a["image_id"] for a in anns), np.int64, len(anns))
    g_cat = np.fromiter((a["category_id"] for a in anns), np.int64, len(anns))
    g_ok = np.isin(g_img, imgs) & ~gt_crowd
    out: dict[int, ClassMatches] = {}
    # per class in COCO's record order: images ascending, then score descending, ties in detection id order
    idx = np.flatnonzero(keep)
    by_cat = idx[np.lexsort((idx, -score[idx], img[idx], cat[idx]))]
    k_cat, k_score, k_tp = cat[by_cat], score[by_cat], gt_of[by_cat] > 0
    bounds = np.searchsorted(k_cat, cats, side="left"), np.searchsorted(k_cat, cats, side="right")
    n_gt = {int(c): int(v) for c, v in zip(*np.unique(g_cat[g_ok], return_counts=True), strict=True)}
    for c, lo, hi in zip(cats, *bounds, strict=True):
        if hi > lo or n_gt.get(int(c), 0):
            out[int(c)] = ClassMatches(k_score[lo:hi], k_tp[lo:hi], n_gt.get(int(c), 0))
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------------ common
def _mean_valid(s: np.ndarray) -> float | None:
    """COCO's summarize average: mean over entries > -1, None (COCO's -1) if there are none."""
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else None


def _curves(run: _Evaluated) -> dict:
    """Interpolated precision at recall 0:0.01:1 (area all, maxDets 100), for the report's PR curves:
    ``{"recall": [...], "precision": {"0.50": [...], "0.50:0.95": [...]}, "per_class": {cat: {"0.50": [...],
    "0.50:0.95": [...]}}}``,
    means over classes (and thresholds) of the defined values, -1 where none is defined."""
    p = run.params
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    t = _iou_index(p)
    prec = np.asarray(run.precision)[:, :, :, a, m]  # T x R x K

    def mean_over(x: np.ndarray, axes: tuple) -> list[float]:
        valid = x > -1
        n = valid.sum(axis=axes)
        s = np.where(valid, x, 0).sum(axis=axes)
        return [round(float(v), 6) for v in np.where(n > 0, s / np.maximum(n, 1), -1.0)]

    return {"recall": [round(float(r), 2) for r in p.recThrs],
            "precision": {"0.50": mean_over(prec[t], (1,)), "0.50:0.95": mean_over(prec, (0, 2))},
            "per_class": {int(c): {"0.50": [round(float(v), 6) for v in prec[t, :, k]],
                                   "0.50:0.95": mean_over(prec[:, :, k], (0,))}
                          for k, c in enumerate(p.catIds)}}


def _stats_dict(stats: np.ndarray) -> dict[str, float | None]:
    return {name: (None if float(v) == -1.0 else float(v)) for name, v in zip(STAT_NAMES, stats, strict=True)}


def _per_class(run: _Evaluated, n_gt: Mapping[int, int]) -> dict[int, dict[str, Any]]:
    """Per-class AP from ``eval['precision']`` as COCO's summarize averages it (area all, maxDets 100)."""
    p = run.params
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    t = _iou_index(p)
    out = {}
    for k, cat in enumerate(p.catIds):
        s = run.precision[:, :, k, a, m]
        out[int(cat)] = {"AP50": _mean_valid(s[t]), "AP50_95": _mean_valid(s), "n_gt": int(n_gt.get(cat, 0))}
    return out


def evaluate(
    gt: Mapping[str, Any] | str | Path | Any,
    detections: Sequence[Mapping[str, Any]],
    iou_type: IouType | str,
    backend: Backend | str = Backend.FASTER,
    image_ids: Sequence[int] | None = None,
    owned: bool = False,
    keep_images: bool = False,
) -> CocoResult:
    """COCO evaluation of ``detections`` against ``gt`` (path, dict, or ``load_gt`` object of ``backend``).

    ``image_ids`` restricts the evaluation to those images (``--limit``); detections elsewhere are dropped.
    An empty detection list is valid: AP 0 wherever there is GT. ``owned``: the detection dicts may be
    modified (``validate`` reads them from the results file for this call), which saves copying them.
    ``keep_images``: keep the backend's per-image evaluations (``CocoResult.images``) for the bootstrap.
    """
    backend, iou_type = Backend(backend), IouType(iou_type)
    coco_gt = as_gt(gt, backend)
    gt_ids = coco_gt.getImgIds()
    img_ids = check_image_ids(image_ids, gt_ids)
    if backend is Backend.FASTER:
        coco_dt, dets = _faster_results(coco_gt, detections, iou_type, img_ids, owned)
        run = _run_faster(coco_gt, coco_dt, iou_type, img_ids, dets, keep_images=keep_images)
    else:
        dets = prepare_detections(detections, iou_type, gt_ids, img_ids)
        run = _run_pycocotools(coco_gt, _load_results(coco_gt, dets, backend), iou_type, img_ids, keep_images)
    classes = run.classes
    op = f1_operating_point(classes)
    return CocoResult(
        stats=_stats_dict(run.stats),
        per_class=_per_class(run, {c: m.n_gt for c, m in classes.items()}),
        mean_recall=None if op is None else op.recall,
        mean_precision=None if op is None else op.precision,
        f1=None if op is None else op.f1,
        f1_conf=None if op is None else op.conf,
        iou_type=iou_type,
        backend=backend,
        classes=classes,
        images=run.images,
        curves=_curves(run),
    )
