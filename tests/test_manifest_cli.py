"""`validate --manifest variants.json`: every variant a quantize run lists becomes a row compared with the
float model; calibration images that are also evaluated are flagged; a bad file exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import MODELS
from validator.cli import main


def _variants(tmp_path: Path, calib_source: Path, names: list[str]) -> Path:
    d = tmp_path / "q"
    d.mkdir()
    shutil.copy(MODELS / "shapes-det.int8.tflite", d / "a.int8.tflite")
    shutil.copy(MODELS / "shapes-det.degraded.tflite", d / "b.int8.tflite")
    doc = {"format": "qharness-variants", "version": 1,
           "variants": [{"format": "qharness-variant", "version": 1, "name": p.stem, "path": p.name,
                         "calibration": {"source": str(calib_source), "count": len(names), "images": names}}
                        for p in sorted(d.glob("*.tflite"))]}
    (d / "variants.json").write_text(json.dumps(doc))
    return d / "variants.json"


def test_every_variant_is_a_row_and_calibration_overlap_is_flagged(shapes_small, tmp_path):
    doc = json.loads((shapes_small / "annotations.json").read_text())
    first = sorted(doc["images"], key=lambda im: im["id"])[:3]
    v = _variants(tmp_path, shapes_small, [im["file_name"] for im in first])
    out = tmp_path / "o"
    assert main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(v), "--data", str(shapes_small),
                 "--limit", "5", "--out", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in s["models"]] == ["shapes-det", "a.int8", "b.int8"]
    assert [d["model"] for d in s["deltas"]] == ["a.int8", "b.int8"]
    notes = [n for m in s["models"] for n in m.get("notes", [])]
    assert sum("calibrated on 3 of the images evaluated here" in n for n in notes) == 2


def test_calibration_elsewhere_is_not_flagged(shapes_small, tmp_path):
    v = _variants(tmp_path, tmp_path / "elsewhere", ["000000000001.jpg"])
    out = tmp_path / "o"
    assert main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(v), "--data", str(shapes_small),
                 "--limit", "3", "--out", str(out), "--quiet"]) == 0
    assert not any(m.get("notes") for m in json.loads((out / "summary.json").read_text())["models"])


def test_not_a_variants_file_exits_2(shapes_small, tmp_path, capsys):
    bad = tmp_path / "variants.json"
    bad.write_text('{"variants": []}')
    assert main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(bad), "--data", str(shapes_small),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "variants.json" in err
