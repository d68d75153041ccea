"""Parity at COCO's scale: 5000 images, ~35k ground truth with crowds, 80 classes.

The small parity tests (test_metrics_cocoeval.py) cover the rules; this one covers what only shows at scale
(index bookkeeping across thousands of images, the one-pass Mean Recall on the C++ matcher's output, the
streamed predictions read back). The case is the benchmark's (benchmarks/coco_data.py), with fewer
detections per image so plain pycocotools finishes in seconds. Expected numbers come from pycocotools run
here on the same files; ours are read the way ``validate`` reads them (predictions file on disk,
faster-coco-eval backend) and compared as summary.json stores them (12 decimals).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.test_metrics_cocoeval import expected_stats, plain_cocoeval, reference_operating_point
from validator.metrics import Backend, evaluate
from validator.predictions import read_predictions
from validator.run import _r

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 5000


def _make_case():
    spec = importlib.util.spec_from_file_location("coco_data", ROOT / "benchmarks" / "coco_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_case


@pytest.mark.slow
@pytest.mark.parametrize("iou_type,per_image", [("bbox", 20), ("segm", 4)])
def test_5000_images_equal_pycocotools(tmp_path, iou_type, per_image):
    gt, dets = _make_case()(IMAGES, dets_per_image=per_image, seed=7, masks=iou_type == "segm")
    assert len(gt["images"]) == IMAGES and len(gt["annotations"]) > 30000
    assert sum(a["iscrowd"] for a in gt["annotations"]) > 100
    path = tmp_path / "dt.json"  # one detection per line, as validate streams them
    path.write_text("[" + ",\n".join(json.dumps(d, separators=(",", ":")) for d in dets) + "]\n")

    ref = plain_cocoeval(gt, dets, iou_type)
    want = {k: _r(v) for k, v in expected_stats(ref).items()}
    assert 0.05 < want["mAP50"] < 0.95  # a non-degenerate case
    op = reference_operating_point(ref)

    got = evaluate(gt, read_predictions(path), iou_type, backend=Backend.FASTER, owned=True)
    assert {k: _r(v) for k, v in got.stats.items()} == want
    assert _r(got.mean_recall) == _r(op.recall)
    assert _r(got.mean_precision) == _r(op.precision)
    assert _r(got.f1_conf) == _r(op.conf)
    # per-class AP from the same pass, against pycocotools' own precision array (IoU 0.50, area all, 100 dets)
    prec = ref.eval["precision"]
    for k, cat in enumerate(ref.params.catIds):
        p50 = prec[0, :, k, 0, -1]
        want50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else None
        assert _r(got.per_class[cat]["AP50"]) == _r(want50), cat
