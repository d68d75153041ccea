"""metrics/bootstrap.py: resampled metrics equal an independent pycocotools run on the resampled dataset
(drawn images duplicated under new ids), the identity resample reproduces the evaluation, seeds reproduce,
and intervals narrow as the dataset grows."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from validator.metrics import cocoeval as ce
from validator.metrics.bootstrap import resample_indices, resampled
from validator.metrics.recall import f1_operating_point


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


def test_identity_resample_reproduces_the_evaluation(case):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", resample=True)
    s = resampled({"m": r.resampler}, "m", np.arange(len(gt["images"]))[None])["m"]
    for k, v in r.stats.items():
        assert s[k][0] == pytest.approx(v, abs=1e-12) if v is not None else np.isnan(s[k][0])
    assert s["mean_recall"][0] == pytest.approx(r.mean_recall, abs=1e-12)
    for c, pc in r.per_class.items():
        if pc["AP50_95"] is not None:
            assert s["per_class"][c]["AP50_95"][0] == pytest.approx(pc["AP50_95"], abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_resample_equals_pycocotools_on_the_resampled_dataset(case, seed):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", resample=True)
    idx = resample_indices(len(gt["images"]), 1, seed)
    assert len(set(idx[0])) < len(idx[0])  # there are repeats to get right
    s = resampled({"m": r.resampler}, "m", idx)["m"]
    gt2, dets2 = _duplicated(gt, dets, idx[0])
    ref = _pycocotools(gt2, dets2)
    for k, v in zip(ce.STAT_NAMES, ref, strict=True):
        if v is None:
            assert np.isnan(s[k][0]), k
        else:
            assert s[k][0] == pytest.approx(v, abs=1e-9), k
    # Mean Recall on the same explicit dataset, through the normal evaluation
    assert s["mean_recall"][0] == pytest.approx(ce.evaluate(gt2, dets2, "bbox").mean_recall, abs=1e-12)


def test_paired_mean_recall_reads_the_compared_model_at_the_reference_confidence(case):
    gt, dets = case
    worse = [{**d, "score": round(d["score"] * 0.8, 5)} for d in dets]
    ref = ce.evaluate(gt, dets, "bbox", resample=True)
    other = ce.evaluate(gt, worse, "bbox", resample=True)
    idx = resample_indices(len(gt["images"]), 3, 7)
    s = resampled({"ref": ref.resampler, "q": other.resampler}, "ref", idx)
    for b, row in enumerate(idx):
        conf = f1_operating_point(ref.resampler.classes(row)).conf
        want = f1_operating_point(other.resampler.classes(row), at_conf=conf).recall
        assert s["q"]["mean_recall"][b] == pytest.approx(want)


def test_seeded_and_narrowing(shapes_small, case):
    gt, dets = case
    r = ce.evaluate(gt, dets, "bbox", resample=True)
    a = resampled({"m": r.resampler}, "m", resample_indices(len(gt["images"]), 60, 5))["m"]["mAP50_95"]
    b = resampled({"m": r.resampler}, "m", resample_indices(len(gt["images"]), 60, 5))["m"]["mAP50_95"]
    assert np.array_equal(a, b)
    # a quarter of the images: the same kind of data, a wider interval
    keep = {im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])[: len(gt["images"]) // 4]}
    small_gt = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
                "annotations": [x for x in gt["annotations"] if x["image_id"] in keep]}
    small = ce.evaluate(small_gt, [d for d in dets if d["image_id"] in keep], "bbox", resample=True)
    c = resampled({"m": small.resampler}, "m", resample_indices(len(keep), 60, 5))["m"]["mAP50_95"]
    width = lambda v: float(np.subtract(*np.nanpercentile(v, [97.5, 2.5])))  # noqa: E731
    assert width(c) > width(a)


def test_resample_requires_the_faster_backend(case):
    gt, dets = case
    assert ce.evaluate(gt, dets, "bbox", backend="pycocotools", resample=True).resampler is None
