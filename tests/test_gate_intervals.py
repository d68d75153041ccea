"""gate/intervals.py + gate/resampled_coco.py: a resample's metrics, computed from the evaluation's own
per-image matches with image multiplicities as weights, equal

* an independent pycocotools run on the resampled dataset made explicit (drawn images duplicated under new
  ids), for both backends;
* the backend's own ``accumulate`` handed the resampled per-image evaluations (what the gate did before,
  35 ms a resample), element by element, to the last digit, on data whose scores tie as INT8 models' do
  (blocks of one image mixing true and false positives at one score, repeated by the resample);
* Mean Recall of the expanded (repeated) match list through ``validator.metrics.recall``;

and the identity resample reproduces the evaluation, seeds reproduce, rows are sorted and reach every
image, intervals narrow as the dataset grows.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from validator.gate.intervals import STAT_SLICES, Resampler, resample_indices, resampled
from validator.gate.resampled_coco import weights_of
from validator.metrics import cocoeval as ce
from validator.metrics.recall import ClassMatches, f1_operating_point

ALL_STATS = tuple(STAT_SLICES)
BACKENDS = ["faster-coco-eval", "pycocotools"]


@pytest.fixture(scope="module")
def case(shapes_small):
    gt = json.loads((shapes_small / "annotations.json").read_text())
    rng = np.random.default_rng(0)
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.1 * max(w, h), 2)
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + j[0], y + j[1], w, h],
                     "score": round(float(rng.uniform(0.05, 1)), 5)})
    for im in gt["images"][::2]:
        dets.append({"image_id": im["id"], "category_id": gt["categories"][1]["id"], "bbox": [2.0, 2.0, 30.0, 20.0],
                     "score": 0.4})
    return gt, ce.prepare_detections(dets, ce.IouType.BBOX, [im["id"] for im in gt["images"]])


@pytest.fixture(scope="module")
def tied(shapes_small):
    """Scores on 8 levels (an INT8 output's few distinct values), duplicates and near misses at the same
    score in the same image: blocks that mix true and false positives, which a repeat interleaves."""
    gt = json.loads((shapes_small / "annotations.json").read_text())
    rng = np.random.default_rng(4)
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        s = float(rng.integers(1, 9)) / 8
        for _ in range(int(rng.integers(1, 4))):  # a hit and same-score duplicates / loose copies
            j = rng.normal(0, 0.15 * max(w, h), 2)
            dets.append({"image_id": a["image_id"], "category_id": a["category_id"],
                         "bbox": [x + j[0], y + j[1], w * float(rng.uniform(0.7, 1.3)), h], "score": s})
    for im in gt["images"]:
        for _ in range(3):
            dets.append({"image_id": im["id"], "category_id": gt["categories"][int(rng.integers(0, 6))]["id"],
                         "bbox": [float(rng.uniform(0, 100)), float(rng.uniform(0, 100)), 25.0, 25.0],
                         "score": float(rng.integers(1, 9)) / 8})
    return gt, ce.prepare_detections(dets, ce.IouType.BBOX, [im["id"] for im in gt["images"]])


def _duplicated(gt: dict, dets: list[dict], idx: np.ndarray) -> tuple[dict, list[dict]]:
    """The resampled dataset made explicit: the k-th drawn image becomes image k + 1 (with its GT and
    detections), so drawing an image twice counts it twice."""
    images = sorted(gt["images"], key=lambda im: im["id"])
    imgs, anns, out = [], [], []
    by_img: dict = {}
    for a in gt["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    d_by_img: dict = {}
    for d in dets:
        d_by_img.setdefault(d["image_id"], []).append(d)
    for k, i in enumerate(idx):
        src = images[i]
        imgs.append({**src, "id": k + 1})
        for a in by_img.get(src["id"], []):
            anns.append({**copy.deepcopy(a), "id": len(anns) + 1, "image_id": k + 1})
        for d in d_by_img.get(src["id"], []):
            out.append({**d, "image_id": k + 1})
    return {**gt, "images": imgs, "annotations": anns}, out


def _pycocotools(gt: dict, dets: list[dict]) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [None if v == -1 else float(v) for v in ev.stats]


def _resampler(r) -> Resampler:
    return Resampler.from_images(r.images, ALL_STATS)


# ------------------------------------------------------------------------------ the old recomputation
def _accumulate_oracle(r, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the gate computed before: the backend's own accumulate on the resample's per-image evaluations
    (faster-coco-eval's C++ accumulate on the picked ImageEvaluation handles; pycocotools' accumulate on
    the picked evalImgs under placeholder image ids). Precision T x R x K x A x M, recall T x K x A x M."""
    im = r.images
    p = copy.copy(im.params)
    K, A, n = len(p.catIds), len(p.areaRng), len(p.imgIds)
    if im.backend is ce.Backend.FASTER:
        import faster_coco_eval.faster_eval_api_cpp as _C

        p.imgIds = [int(v) for v in np.asarray(im.params.imgIds)[row]]
        out = _C.COCOevalAccumulate(p, im.handles[:, :, row].ravel().tolist())
        return np.asarray(out["precision"]), np.asarray(out["recall"])
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval()
    ev.params = p
    p.imgIds = list(range(len(row)))
    ev._paramsEval = p
    ev.evalImgs = [im.handles[k * A * n + a * n + int(i)] for k in range(K) for a in range(A) for i in row]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
    return ev.eval["precision"], ev.eval["recall"]


def _recall_oracle(r, row: np.ndarray, at_conf=None):
    """Mean Recall as before: the IoU-0.50 matches of each drawn image repeated as often as it was drawn,
    read by validator.metrics.recall.f1_operating_point."""
    im = r.images
    p = im.params
    t50 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
    counts = np.bincount(row, minlength=len(p.imgIds))
    recs = im.records(p.areaRngLbl.index("all"))
    classes = {}
    for k, c in enumerate(p.catIds):
        scores, tps, n_gt = [], [], 0
        for i, rec in enumerate(recs[k]):
            if rec is None or not counts[i]:
                continue
            keep = ~rec.ignored[t50, :100]
            scores += [rec.scores[:100][keep]] * counts[i]
            tps += [rec.matched[t50, :100][keep]] * counts[i]
            n_gt += rec.n_gt * counts[i]
        if scores or n_gt:
            classes[int(c)] = ClassMatches(np.concatenate(scores) if scores else np.zeros(0),
                                           np.concatenate(tps) if tps else np.zeros(0, bool), n_gt)
    return f1_operating_point(classes, at_conf=at_conf)


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_the_backends_own_accumulate_to_the_last_digit(tied, backend):
    gt, dets = tied
    r = ce.evaluate(gt, dets, "bbox", backend=backend, keep_images=True)
    res = _resampler(r)
    mixed = sum(int(x.mixed.sum()) for x in res.slices[("all", 100)].ious)
    assert mixed > 0  # the case exercises interleaved copies
    idx = resample_indices(len(gt["images"]), 6, 11)
    w = weights_of(idx, len(gt["images"]))
    table = res.slices[("all", 100)]
    mixed_imgs = {int(i) for x in table.ious for i in x.img[x.mixed]}
    assert (w[:, sorted(mixed_imgs)] >= 2).any()  # ... and a resample repeats one of them
    p = r.images.params
    rec_thrs = np.asarray(p.recThrs)
    for (a_lbl, m), table in res.slices.items():
        prec, rec = table.accumulate(w, rec_thrs)
        a, mi = p.areaRngLbl.index(a_lbl), p.maxDets.index(m)
        for b, row in enumerate(idx):
            want_p, want_r = _accumulate_oracle(r, row)
            np.testing.assert_array_equal(prec[b], want_p[:, :, :, a, mi])
            np.testing.assert_array_equal(rec[b], want_r[:, :, a, mi])


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_recall_equals_the_expanded_list_to_the_last_digit(tied, backend):
    gt, dets = tied
    r = ce.evaluate(gt, dets, "bbox", backend=backend, keep_images=True)
    worse = [{**d, "score": round(d["score"] * 0.75, 5)} for d in dets]
    q = ce.evaluate(gt, worse, "bbox", backend=backend, keep_images=True)
    idx = resample_indices(len(gt["images"]), 5, 3)
    s = resampled({"ref": _resampler(r), "q": _resampler(q)}, "ref", idx)
    for b, row in enumerate(idx):
        ref_op = _recall_oracle(r, row)
        assert s["ref"]["mean_recall"][b] == ref_op.recall
        assert s["q"]["mean_recall"][b] == _recall_oracle(q, row, at_conf=ref_op.conf).recall


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_resample_reproduces_the_evaluation(case, backend):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", backend=backend, keep_images=True)
    s = resampled({"m": _resampler(r)}, "m", np.arange(len(gt["images"]))[None])["m"]
    for k, v in r.stats.items():
        assert s[k][0] == pytest.approx(v, abs=1e-12) if v is not None else np.isnan(s[k][0])
    assert s["mean_recall"][0] == pytest.approx(r.mean_recall, abs=1e-12)
    for c, pc in r.per_class.items():
        if pc["AP50_95"] is not None:
            assert s["per_class"][c]["AP50_95"][0] == pytest.approx(pc["AP50_95"], abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_resample_equals_pycocotools_on_the_resampled_dataset(case, seed, backend):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", backend=backend, keep_images=True)
    idx = resample_indices(len(gt["images"]), 1, seed)
    assert len(set(idx[0])) < len(idx[0])  # there are repeats to get right
    s = resampled({"m": _resampler(r)}, "m", idx)["m"]
    gt2, dets2 = _duplicated(gt, dets, idx[0])
    ref = _pycocotools(gt2, dets2)
    for k, v in zip(ce.STAT_NAMES, ref, strict=True):
        if v is None:
            assert np.isnan(s[k][0]), k
        else:
            assert s[k][0] == pytest.approx(v, abs=1e-9), k
    # Mean Recall on the same explicit dataset, through the normal evaluation
    assert s["mean_recall"][0] == pytest.approx(ce.evaluate(gt2, dets2, "bbox").mean_recall, abs=1e-12)


def test_only_the_slices_the_gate_reads_are_built(case):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", keep_images=True)
    res = Resampler.from_images(r.images, ["mAP50_95", "mAP50"])
    assert set(res.slices) == {("all", 100)}
    s = resampled({"m": res}, "m", resample_indices(len(gt["images"]), 3, 1))["m"]
    assert set(s) == {"mAP50_95", "mAP50", "mean_recall", "per_class"}


def test_rows_are_sorted_seeded_and_reach_every_image():
    a = resample_indices(7, 400, 5)
    assert np.array_equal(a, resample_indices(7, 400, 5))
    assert (np.diff(a, axis=1) >= 0).all()
    assert set(np.unique(a)) == set(range(7))  # the last image is drawn too
    assert not np.array_equal(a, resample_indices(7, 400, 6))


def test_intervals_narrow_as_the_dataset_grows(case):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", keep_images=True)
    a = resampled({"m": _resampler(r)}, "m", resample_indices(len(gt["images"]), 60, 5))["m"]["mAP50_95"]
    keep = {im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])[: len(gt["images"]) // 4]}
    small_gt = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
                "annotations": [x for x in gt["annotations"] if x["image_id"] in keep]}
    small = ce.evaluate(small_gt, [d for d in dets if d["image_id"] in keep], "bbox", keep_images=True)
    c = resampled({"m": _resampler(small)}, "m", resample_indices(len(keep), 60, 5))["m"]["mAP50_95"]
    width = lambda v: float(np.subtract(*np.nanpercentile(v, [97.5, 2.5])))  # noqa: E731
    assert width(c) > width(a)
