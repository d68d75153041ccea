"""End to end on the committed fixture models over a shapes split they never saw (seed 3):
every output file is written, our numbers equal an independent pycocotools run on the predictions we
wrote, both COCO backends agree, and summary.json is byte-identical across runs (cached or not)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.conftest import MODELS
from validator.cli import main as validate_main
from validator.run import METRIC_DECIMALS

N_IMAGES = 40
OUTPUTS = ["summary.json", "timing.json", "table.md", "table.csv", "per_class.csv"]


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("heldout")
    generate(out, ShapesConfig(images=N_IMAGES, seed=3))
    return out


def _run(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = validate_main(list(args))
    return code, buf.getvalue()


def _pycocotools(ann: Path, preds: Path, iou_type: str) -> list[float]:
    """An independent COCOeval run on the files, as a user would do it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        dets = json.loads(preds.read_text())
        if not dets:
            return [0.0] * 12
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.fixture(scope="module", params=["det", "seg"])
def run(request, heldout, tmp_path_factory):
    stem = f"shapes-{request.param}"
    out = tmp_path_factory.mktemp(f"out-{stem}")
    cache = tmp_path_factory.mktemp(f"cache-{stem}")
    code, stdout = _run("--float", str(MODELS / f"{stem}.onnx"), "--int8", str(MODELS / f"{stem}.int8.tflite"),
                        "--data", str(heldout), "--out", str(out), "--cache-dir", str(cache), "--workers", "2")
    assert code == 0
    return request.param, out, cache, stdout


def test_all_outputs_written_and_table_printed(run):
    kind, out, _, stdout = run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert [m["role"] for m in summary["models"]] == ["float", "int8"]
    for m in summary["models"]:
        assert (out / m["predictions"]).is_file()
    table = (out / "table.md").read_text()
    assert table.splitlines()[0] in stdout
    title, header = table.splitlines()[0], table.splitlines()[2]
    assert "metric: COCO" in title and f"{summary['dataset']['images']} images" in title
    labels = [m["label"] for m in summary["models"]]
    assert labels == [f"ONNX float32 (shapes-{kind})", f"TFLite INT8 (shapes-{kind}.int8)"]
    if kind == "det":
        assert header == "| Model | mAP@0.5 | mAP@0.5-0.95 | Mean Recall |"
    else:
        assert header == "| Model | Det mAP@0.5 | Det mAP@0.5-0.95 | Mask mAP@0.5 | Mask mAP@0.5-0.95 |"
    assert len([ln for ln in table.splitlines() if ln.startswith("| Δ")]) == 1


def test_numbers_equal_independent_pycocotools(run, heldout):
    kind, out, _, _ = run
    summary = json.loads((out / "summary.json").read_text())
    for m in summary["models"]:
        types = ["bbox", "segm"] if kind == "seg" else ["bbox"]
        assert sorted(m["metrics"]) == sorted(types)
        for t in types:
            ref = _pycocotools(heldout / "annotations.json", out / m["predictions"], t)
            got = m["metrics"][t]
            ref = [round(v, METRIC_DECIMALS) for v in ref]  # the precision summary.json stores
            assert got["mAP50_95"] == ref[0]
            assert got["mAP50"] == ref[1]
            assert got["AR100"] == ref[8]
            assert [got[k] for k in ("AP_small", "AP_medium", "AP_large")] == [
                None if v == -1 else v for v in ref[3:6]]


def test_backends_identical_and_rerun_byte_identical(run, heldout, tmp_path):
    kind, out, cache, _ = run
    stem = f"shapes-{kind}"
    models = ["--float", str(MODELS / f"{stem}.onnx"), "--int8", str(MODELS / f"{stem}.int8.tflite")]
    # cached predictions, reference backend: only metrics recomputed; every stat must be the same
    code, _ = _run(*models, "--data", str(heldout), "--out", str(tmp_path / "ref"), "--cache-dir", str(cache),
                   "--backend", "pycocotools")
    assert code == 0
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert [m["metrics"] for m in a["models"]] == [m["metrics"] for m in b["models"]]
    timing = json.loads((tmp_path / "ref" / "timing.json").read_text())
    assert all(t["cached"] for t in timing.values())
    # fresh inference, same settings: byte-identical summary and predictions
    code, _ = _run(*models, "--data", str(heldout), "--out", str(tmp_path / "again"), "--no-cache")
    assert code == 0
    assert (tmp_path / "again" / "summary.json").read_bytes() == (out / "summary.json").read_bytes()
    for m in a["models"]:
        assert (tmp_path / "again" / m["predictions"]).read_bytes() == (out / m["predictions"]).read_bytes()


def test_float_detector_clearly_above_chance_and_masks_scored(run):
    kind, out, _, _ = run
    summary = json.loads((out / "summary.json").read_text())
    float_model = summary["models"][0]
    assert float_model["metrics"]["bbox"]["mAP50"] >= 0.5
    if kind == "seg":
        assert float_model["metrics"]["segm"]["mAP50"] >= 0.3
    # the INT8 fixtures too: an accuracy floor, and no more than 10 points below the float model at IoU 0.5
    # (measured on 200 held-out images: det 60.6 vs 62.1, seg 58.0 vs 63.6)
    int8 = summary["models"][1]["metrics"]
    assert int8["bbox"]["mAP50"] >= 0.45
    assert int8["bbox"]["mAP50"] >= float_model["metrics"]["bbox"]["mAP50"] - 0.10
    assert int8["bbox"]["mAP50_95"] >= 0.25
    if kind == "seg":
        assert int8["segm"]["mAP50"] >= 0.3
    d = summary["deltas"][0]
    assert d["metrics"]["bbox"]["mAP50"] == pytest.approx(
        100 * (summary["models"][1]["metrics"]["bbox"]["mAP50"] - float_model["metrics"]["bbox"]["mAP50"]), abs=1e-3)
    assert 0 <= d["changed_images"]["count"] <= N_IMAGES


def test_workers_do_not_change_results_and_limit_takes_first_images(heldout, tmp_path):
    det = ["--float", str(MODELS / "shapes-det.onnx"), "--data", str(heldout), "--limit", "7", "--no-cache"]
    code1, _ = _run(*det, "--out", str(tmp_path / "w1"), "--workers", "1")
    code3, _ = _run(*det, "--out", str(tmp_path / "w3"), "--workers", "3", "--threads", "1")
    assert code1 == code3 == 0
    assert (tmp_path / "w1" / "summary.json").read_bytes() == (tmp_path / "w3" / "summary.json").read_bytes()
    summary = json.loads((tmp_path / "w1" / "summary.json").read_text())
    assert summary["dataset"]["images"] == 7
    preds = json.loads((tmp_path / "w1" / "predictions" / "shapes-det.json").read_text())
    assert {p["image_id"] for p in preds} <= set(range(1, 8))
