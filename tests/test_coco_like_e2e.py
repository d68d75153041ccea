"""Every end-to-end family on data shaped like COCO val2017 (``shapes --coco-like``), not just the fixtures.

Fixtures alone hid a crash on val2017: its crowd annotation ids are ~9e11 and an array sized by the largest
id asked for 846 GiB. Here the same runs as on the fixtures (validate det and seg on both backends, the
gate with history, compat, edgefirst, quantize --calib and validate --manifest, the report) go over a
dataset whose ids, crowd ids, category ids (1..90 with gaps, 80 of them), file names, photo sizes and
objects per image look like val2017's, and every number is checked against the same data with its ids
renumbered 1..N: ids must never change a result.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from quantizer.cli import main as quantize_main
from tests.conftest import MODELS, ROOT
from validator.cli import main as validate_main
from validator.run import METRIC_DECIMALS

pytestmark = pytest.mark.slow


def _validate(*args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = validate_main([str(a) for a in args])
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def renumbered(coco_like, tmp_path_factory) -> Path:
    """The same dataset with image, annotation and category ids renumbered 1..N (order kept), same images."""
    doc = json.loads((coco_like / "annotations.json").read_text())
    img = {i: k + 1 for k, i in enumerate(sorted(im["id"] for im in doc["images"]))}
    cat = {c: k + 1 for k, c in enumerate(sorted(c["id"] for c in doc["categories"]))}
    ann = {a: k + 1 for k, a in enumerate(sorted(a["id"] for a in doc["annotations"]))}
    new = copy.deepcopy(doc)
    for im in new["images"]:
        im["id"] = img[im["id"]]
    for c in new["categories"]:
        c["id"] = cat[c["id"]]
    for a in new["annotations"]:
        a["id"], a["image_id"], a["category_id"] = ann[a["id"]], img[a["image_id"]], cat[a["category_id"]]
    out = tmp_path_factory.mktemp("renumbered")
    (out / "annotations.json").write_text(json.dumps(new))
    return out / "annotations.json"


def _metrics_by_name(summary: dict) -> dict:
    """Every model's metrics with per-class entries keyed by class name (ids differ between the two files)."""
    out = {}
    for m in summary["models"]:
        metrics = {}
        for t, v in m["metrics"].items():
            v = dict(v)
            v["per_class"] = {pc["name"]: {k: x for k, x in pc.items() if k != "name"}
                              for pc in v["per_class"].values()}
            metrics[t] = v
        out[m["name"]] = metrics
    return out


def _pycocotools(ann: Path, preds: Path, iou_type: str) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        ev = COCOeval(gt, gt.loadRes(json.loads(preds.read_text())), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [round(float(v), METRIC_DECIMALS) for v in ev.stats]


def test_the_dataset_looks_like_val2017(coco_like):
    doc = json.loads((coco_like / "annotations.json").read_text())
    ids = [im["id"] for im in doc["images"]]
    assert ids != sorted(ids) and all(100 <= i <= 581_781 for i in ids)
    assert all(im["file_name"] == f"{im['id']:012d}.jpg" for im in doc["images"])
    assert max(max(im["width"], im["height"]) for im in doc["images"]) == 640
    cats = [c["id"] for c in doc["categories"]]
    assert len(cats) == 80 and min(cats) == 1 and max(cats) == 90
    crowd = [a["id"] for a in doc["annotations"] if a["iscrowd"]]
    assert crowd and all(a > 9e11 for a in crowd)
    assert max(a["id"] for a in doc["annotations"] if not a["iscrowd"]) > 10_000
    assert 3 <= len(doc["annotations"]) / len(doc["images"]) <= 12


@pytest.fixture(scope="module", params=["det", "seg"])
def pair(request, coco_like, tmp_path_factory):
    """The command that crashed on val2017 (default backend), on the det and the seg pair."""
    stem = f"shapes-{request.param}"
    out = tmp_path_factory.mktemp(f"cl-{stem}")
    cache = tmp_path_factory.mktemp(f"cl-cache-{stem}")
    models = ["--float", MODELS / f"{stem}.onnx", "--int8", MODELS / f"{stem}.int8.tflite"]
    code, stdout = _validate(*models, "--data", coco_like, "--out", out, "--cache-dir", cache, "--quiet")
    assert code == 0, stdout
    return request.param, models, out, cache


def test_validate_equals_pycocotools_and_both_backends(pair, coco_like, tmp_path):
    kind, models, out, cache = pair
    summary = json.loads((out / "summary.json").read_text())
    types = ["bbox", "segm"] if kind == "seg" else ["bbox"]
    for m in summary["models"]:
        for t in types:
            ref = _pycocotools(coco_like / "annotations.json", out / m["predictions"], t)
            got = m["metrics"][t]
            assert [got["mAP50_95"], got["mAP50"], got["AR100"]] == [ref[0], ref[1], ref[8]]
        assert m["metrics"]["bbox"]["mAP50"] > 0.3  # the shapes are found at COCO's sizes
    code, _ = _validate(*models, "--data", coco_like, "--out", tmp_path / "ref", "--cache-dir", cache,
                        "--backend", "pycocotools", "--quiet")
    assert code == 0
    ref = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert [m["metrics"] for m in ref["models"]] == [m["metrics"] for m in summary["models"]]


@pytest.mark.parametrize("metric", ["coco", "compat", "edgefirst"])
def test_ids_never_change_a_result(metric, coco_like, renumbered, tmp_path):
    """Each reading on val2017-shaped ids equals the same reading on the same data with ids 1..N."""
    models = ["--float", MODELS / "shapes-seg.onnx", "--int8", MODELS / "shapes-seg.int8.tflite"]
    got = {}
    for name, data in (("coco-like", [coco_like]), ("renumbered", [renumbered, "--images", coco_like / "images"])):
        out = tmp_path / name
        code, stdout = _validate(*models, "--data", *data, "--metric", metric, "--out", out,
                                 "--cache-dir", tmp_path / "cache", "--quiet")
        assert code == 0, stdout
        got[name] = json.loads((out / "summary.json").read_text())
    assert got["coco-like"]["metric"] == metric
    assert _metrics_by_name(got["coco-like"]) == _metrics_by_name(got["renumbered"])
    a, b = (d["deltas"][0]["metrics"] for d in (got["coco-like"], got["renumbered"]))
    for t in a:
        a[t].pop("per_class"), b[t].pop("per_class")
        assert a[t] == b[t]


def test_gate_history_and_report(coco_like, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step.md"))
    db = tmp_path / "h.sqlite"
    models = ["--float", MODELS / "shapes-det.onnx", "--int8", MODELS / "shapes-det.int8.tflite"]
    for run in ("1", "2"):
        code, stdout = _validate(*models, "--data", coco_like, "--out", tmp_path / run, "--gate",
                                 ROOT / "examples" / "gate.toml", "--history", db, "--baseline", "last-accepted",
                                 "--cache-dir", tmp_path / "cache", "--quiet")
        assert code in (0, 1), stdout
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        assert summary["gate"]["passed"] is (code == 0)
        cases = list(ET.fromstring((tmp_path / run / "junit.xml").read_text()).iter("testcase"))
        assert len(cases) == len(summary["gate"]["results"])
    code, stdout = _validate("history", "--db", db, "--plot", tmp_path / "trend.png")
    assert code == 0 and (tmp_path / "trend.png").stat().st_size > 1000
    assert len(re.findall(r"^\| *\d+ *\|", stdout, re.M)) == 2  # both runs in the trend table
    html = (tmp_path / "2" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    # the gallery shows val2017-named images; the per-class table names the shapes at their COCO ids
    doc = json.loads((coco_like / "annotations.json").read_text())
    names = {im["file_name"] for im in doc["images"]}
    assert any(n in html for n in names)
    assert "star" in html and "hexagon" in html


def test_quantize_calibrates_on_it_and_validate_sees_the_overlap(coco_like, tmp_path):
    out = tmp_path / "variants"
    rc = quantize_main(["--model", str(MODELS / "shapes-det.onnx"), "--calib", str(coco_like), "--samples", "8",
                        "--strategy", "minmax", "--outputs", "split", "--check-images", "2", "--out", str(out),
                        "--stats-dir", str(tmp_path / "stats"), "--quiet"])
    assert rc == 0
    index = json.loads((out / "variants.json").read_text())
    cal = json.loads((out / f"{index['variants'][0]['path']}.json").read_text())["calibration"]
    assert len(cal["images"]) == 8 and all(re.fullmatch(r"0{6}\d{6}\.jpg", Path(n).name) for n in cal["images"])
    code, stdout = _validate("--float", MODELS / "shapes-det.onnx", "--manifest", out / "variants.json",
                             "--data", coco_like, "--out", tmp_path / "v", "--cache-dir", tmp_path / "cache")
    assert code == 0, stdout
    assert "calibrat" in stdout and "8 of" in stdout  # the overlap is reported
