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


def _three_categories(shapes_small, tmp_path) -> Path:
    doc = json.loads((shapes_small / "annotations.json").read_text())
    doc["categories"] = doc["categories"][:3]
    keep = {c["id"] for c in doc["categories"]}
    doc["annotations"] = [a for a in doc["annotations"] if a["category_id"] in keep]
    ann = tmp_path / "three.json"
    ann.write_text(json.dumps(doc))
    return ann


def test_model_without_names_and_wrong_class_count(tmp_path, shapes_small):
    """A 6-class model without class names on a 3-category dataset cannot be mapped: a mismatch, not a
    silent mapping by order."""
    import numpy as np

    from tests.tiny_models import onnx_model

    m = onnx_model(tmp_path / "nonames.onnx", [1, 3, 64, 64], outputs={"output0": np.zeros((1, 10, 84), np.float32)})
    ann = _three_categories(shapes_small, tmp_path)
    _one_line_error(_validate("--float", str(m), "--data", str(ann), "--images", str(shapes_small / "images"),
                              "--out", str(tmp_path / "o")), "6 classes", "3 categories", "--names")


def test_model_classes_not_in_dataset_are_dropped_and_counted(tmp_path, shapes_small):
    """The det fixture names its 6 classes; on a dataset with 3 of them the other 3 are dropped (their
    detections too), counted in summary.json and in the table notes."""
    ann = _three_categories(shapes_small, tmp_path)
    out = tmp_path / "o"
    r = _validate("--float", str(DET), "--data", str(ann), "--images", str(shapes_small / "images"),
                  "--out", str(out), "--no-cache", "--limit", "10")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    c = s["models"][0]["classes"]
    assert c["by"] == "name" and c["mapped"] == 3
    assert [x["name"] for x in c["model_classes_dropped"]] == ["star", "hexagon", "cross"]
    assert c["dataset_categories_missing"] == []
    assert c["detections_dropped"] > 0
    preds = json.loads((out / "predictions" / "shapes-det.json").read_text())
    assert {p["category_id"] for p in preds} <= {cat["id"] for cat in s["dataset"]["categories"]}
    assert "3 model classes are not dataset categories" in r.stdout


def test_failed_run_keeps_previous_outputs(data_copy, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.json").write_text('{"previous": true}\n')
    ann = data_copy / "annotations.json"
    ann.write_bytes(ann.read_bytes()[:100])
    _one_line_error(_validate("--float", str(DET), "--data", str(data_copy), "--out", str(out)))
    assert (out / "summary.json").read_text() == '{"previous": true}\n'


# ------------------------------------------------------------------------------------------ usage errors
def _usage(prog: list[str], *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", *prog, *args], capture_output=True, text=True, check=False, timeout=120)
    return _one_line_error(r)


VALIDATE, QUANTIZE, DATASETS = ["validator.cli"], ["quantizer.cli"], ["validator.datasets"]


@pytest.mark.parametrize("prog, args, needles", [
    # a misspelt subcommand was read as missing --data; a misspelt flag as a missing required one
    (VALIDATE, ["histroy", "--db", "h.sqlite"], ["unknown command 'histroy'", "did you mean 'history'"]),
    (QUANTIZE, ["--modle", "x"], ["unknown option --modle", "did you mean --model?"]),
    (VALIDATE, ["--float", "x.onnx", "--dataa", "d"], ["unknown option --dataa", "--data?"]),
    (VALIDATE, ["history", "--dbb", "x"], ["validate history: error: unknown option --dbb", "--db?"]),
    (DATASETS, ["shapes", "--outt", "x"], ["unknown option --outt", "--out?"]),
    (VALIDATE, ["--conf", "x", "--data", "d"], ["--conf: invalid float value"]),
    (VALIDATE, ["--float", "x.onnx"], ["required: --data"]),
])
def test_usage_errors_are_one_line_naming_the_word_and_the_closest(prog, args, needles):
    line = _usage(prog, *args)
    assert "usage:" not in line and "--help" in line
    for n in needles:
        assert n in line, line


def test_quantize_version_and_every_option_has_help():
    r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--version"], capture_output=True, text=True,
                       check=False, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("quantize (qharness) ")
    from quantizer.cli import build_parser as quantize_parser
    from validator.cli import build_parser as validate_parser

    for parser in (validate_parser(), quantize_parser()):
        for a in parser._actions:
            assert a.help, (parser.prog, a.option_strings)
    assert "detect" not in next(a.help for a in validate_parser()._actions if "--boxes" in a.option_strings)


def test_datasets_help_is_plain_text_and_fetch_lists_the_recipes():
    top = subprocess.run([sys.executable, "-m", "validator.datasets", "--help"], capture_output=True, text=True,
                         check=False, timeout=120)
    assert top.returncode == 0 and "``" not in top.stdout
    fetch = subprocess.run([sys.executable, "-m", "validator.datasets", "fetch", "--help"], capture_output=True,
                           text=True, check=False, timeout=120)
    assert fetch.returncode == 0 and "coco-val2017" in fetch.stdout


def test_quantize_calib_json_with_missing_images_names_the_json(tmp_path):
    ann = tmp_path / "badnames.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "nope.jpg", "width": 10, "height": 10}],
                               "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(DET), "--calib", "badnames.json",
                        "--out", str(tmp_path / "q")], capture_output=True, text=True, check=False, timeout=300,
                       cwd=tmp_path)
    line = _one_line_error(r, "badnames.json", "nope.jpg")
    assert "--skip-missing" not in line  # validate's option, which quantize does not have
