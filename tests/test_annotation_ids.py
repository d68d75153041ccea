"""Annotation ids that start at 0 (CVAT, Roboflow and others export them so) or repeat.

Both COCO backends record a detection's match as the matched annotation's id with 0 meaning "no match":
left alone, a ground truth with id 0 is matched and then counted as a false positive (pycocotools' own AP
drops), and the two backends' Mean Recall disagree. Evaluation renumbers such ids; these tests hold both
backends to the numbers of the same data with ids from 1.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from validator.cli import main
from validator.metrics import evaluate


def _hand_case(first_id: int) -> dict:
    return {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": first_id, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                             "iscrowd": 0},
                            {"id": first_id + 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20],
                             "area": 400, "iscrowd": 0}]}


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
def test_two_perfect_detections_score_1_whatever_the_first_id(backend):
    """Hand case: two GT, two exact detections: AP 1, recall 1 (unpatched, pycocotools read 0.2525 / 0.5)."""
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8}]
    for first in (0, 1):
        r = evaluate(_hand_case(first), dets, "bbox", backend=backend)
        assert r.stats["mAP50"] == pytest.approx(1.0)
        assert r.stats["AR100"] == pytest.approx(1.0)
        assert r.mean_recall == pytest.approx(1.0)


def _noisy_detections(gt: dict, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue  # a miss
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.08 * max(w, h), 4)
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.05, 1)),
                     "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
    for im in gt["images"][::3]:  # false positives
        dets.append({"image_id": im["id"], "category_id": gt["categories"][0]["id"], "score": 0.3,
                     "bbox": [1.0, 1.0, 10.0, 10.0]})
    return dets


def _val2017_id(k: int, a: dict) -> int:
    """val2017's ids: crowds 9e11 + category x 1e8 + image id (e.g. 900100259690), others sparse to ~2e6."""
    return 900_000_000_000 + a["category_id"] * 100_000_000 + a["image_id"] if a["iscrowd"] else 1_000 + 7_919 * k


@pytest.mark.parametrize("mode", ["from0", "duplicates", "val2017"])
def test_backends_agree_with_ids_from_0_or_repeated(shapes_small, mode):
    gt = json.loads((shapes_small / "annotations.json").read_text())
    dets = _noisy_detections(gt)
    odd = copy.deepcopy(gt)
    assert any(a["iscrowd"] for a in odd["annotations"])
    for k, a in enumerate(odd["annotations"]):
        a["id"] = {"from0": k, "duplicates": (k // 2) + 1, "val2017": _val2017_id(k, a)}[mode]
    ref = evaluate(gt, dets, "bbox", backend="pycocotools")
    for data in (odd, gt):
        for backend in ("pycocotools", "faster-coco-eval"):
            r = evaluate(data, dets, "bbox", backend=backend)
            for k, v in ref.stats.items():
                assert r.stats[k] == pytest.approx(v, abs=1e-12), (backend, k)
            assert r.mean_recall == pytest.approx(ref.mean_recall, abs=1e-12), backend
            for cid, pc in ref.per_class.items():
                assert r.per_class[cid]["AP50"] == pytest.approx(pc["AP50"], abs=1e-12)
    assert [a["id"] for a in odd["annotations"][:3]] == {  # untouched
        "from0": [0, 1, 2], "duplicates": [1, 1, 2],
        "val2017": [_val2017_id(k, a) for k, a in enumerate(odd["annotations"][:3])]}[mode]


def test_cli_backends_agree_on_a_dataset_with_ids_from_0(shapes_small, tmp_path, models_dir):
    doc = json.loads((shapes_small / "annotations.json").read_text())
    for k, a in enumerate(doc["annotations"]):
        a["id"] = k
    ann = tmp_path / "ids0.json"
    ann.write_text(json.dumps(doc))
    metrics = {}
    cache = tmp_path / "cache"
    for data, backend in ((ann, "faster-coco-eval"), (ann, "pycocotools"),
                          (shapes_small / "annotations.json", "pycocotools")):
        out = tmp_path / f"o-{backend}-{data.stem}"
        assert main(["--model", str(models_dir / "shapes-det.onnx"), "--data", str(data), "--images",
                     str(shapes_small / "images"), "--backend", backend, "--out", str(out), "--limit", "10",
                     "--cache-dir", str(cache), "--quiet"]) == 0
        metrics[(data.stem, backend)] = json.loads((out / "summary.json").read_text())["models"][0]["metrics"]
    first = metrics[("ids0", "faster-coco-eval")]
    assert metrics[("ids0", "pycocotools")] == first
    assert metrics[("annotations", "pycocotools")] == first
