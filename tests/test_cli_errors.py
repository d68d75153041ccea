"""Bad input through the real `validate` command: exit code 2, one line on stderr naming the file and
the problem, no traceback, and nothing previously written is lost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODELS

DET = MODELS / "shapes-det.onnx"


def _validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "validator.cli", *args], capture_output=True, text=True,
                          check=False, timeout=300)


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def data_copy(shapes_small, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(shapes_small, dst)
    return dst


def test_missing_model_file(shapes_small, tmp_path):
    missing = tmp_path / "nope.onnx"
    _one_line_error(_validate("--float", str(missing), "--data", str(shapes_small), "--out", str(tmp_path / "o")),
                    str(missing), "not found")


def test_truncated_annotation_json(data_copy, tmp_path):
    ann = data_copy / "annotations.json"
    raw = ann.read_bytes()
    ann.write_bytes(raw[: len(raw) // 2])
    _one_line_error(_validate("--float", str(DET), "--data", str(data_copy), "--out", str(tmp_path / "o")),
                    str(ann), "truncated")


def test_schema_invalid_annotation_json(data_copy, tmp_path):
    ann = data_copy / "annotations.json"
    doc = json.loads(ann.read_text())
    del doc["categories"]
    ann.write_text(json.dumps(doc))
    _one_line_error(_validate("--float", str(DET), "--data", str(data_copy), "--out", str(tmp_path / "o")),
                    str(ann), "categories")


def test_missing_images_error_by_default(data_copy, tmp_path):
    victim = sorted((data_copy / "images").glob("*.jpg"))[0]
    victim.unlink()
    _one_line_error(_validate("--float", str(DET), "--data", str(data_copy), "--out", str(tmp_path / "o")),
                    victim.name, "missing", "--skip-missing")


def test_no_model_is_a_usage_error(shapes_small):
    r = _validate("--data", str(shapes_small))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_model_with_wrong_class_count(tmp_path, shapes_small):
    """A dataset with fewer categories than the model's 6 classes is a mismatch, not a silent mapping."""
    doc = json.loads((shapes_small / "annotations.json").read_text())
    doc["categories"] = doc["categories"][:3]
    keep = {c["id"] for c in doc["categories"]}
    doc["annotations"] = [a for a in doc["annotations"] if a["category_id"] in keep]
    ann = tmp_path / "three.json"
    ann.write_text(json.dumps(doc))
    _one_line_error(_validate("--float", str(DET), "--data", str(ann), "--images", str(shapes_small / "images"),
                              "--out", str(tmp_path / "o")), "6", "3")


def test_failed_run_keeps_previous_outputs(data_copy, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.json").write_text('{"previous": true}\n')
    ann = data_copy / "annotations.json"
    ann.write_bytes(ann.read_bytes()[:100])
    _one_line_error(_validate("--float", str(DET), "--data", str(data_copy), "--out", str(out)))
    assert (out / "summary.json").read_text() == '{"previous": true}\n'
