"""quantizer.convert: the committed float TFLite fixtures are what the conversion path makes of the committed
ONNX (records, sha256, outputs equal to onnxruntime's on the rewritten graph), lookups, and -- only where
``QHARNESS_CONVERT_TESTS=1`` and an onnx2tf environment exist (``nox -s convert``, run by CI) -- a real
onnx2tf conversion of both layouts, with no network.
"""

from __future__ import annotations

import json
import os
import shutil

import onnx
import pytest

from quantizer import convert, layout
from quantizer.common import sha256_file
from tests.conftest import MODELS

FIXTURES = [(stem, lay) for stem in ("shapes-det", "shapes-seg") for lay in ("monolithic", "split")]
NEEDS_TF = pytest.mark.skipif(
    os.environ.get("QHARNESS_CONVERT_TESTS") != "1" or convert.converter_python() is None,
    reason="conversion tests run in `nox -s convert` (QHARNESS_CONVERT_TESTS=1 and an onnx2tf environment)")


@pytest.mark.parametrize("stem, lay", FIXTURES)
def test_committed_float_tflite_is_the_conversion_of_the_committed_onnx(stem, lay):
    src = MODELS / f"{stem}.onnx"
    hit = convert.find(src, sha256_file(src), lay, cache=None)
    assert hit is not None, "record missing or stale: rerun tools/make_quantizer_fixtures.py"
    assert hit.path == MODELS / f"{stem}.{lay}.float32.tflite"
    rec = hit.record
    assert rec["converter"]["onnx2tf"] == convert.ONNX2TF_VERSION and rec["layout_version"] == convert.LAYOUT_VERSION
    # the rewrite the code makes today still gives what the committed TFLite computes
    check = convert.check_against_onnx(layout.apply(onnx.load(str(src)), lay), hit.path)
    assert set(check) == set(rec["check_vs_onnx"])
    assert all(v["max_rel_error"] < convert.MAX_REL_ERROR for v in check.values())


def test_640_fixture_record():
    rec = json.loads((MODELS / "shapes-det-640.split.float32.json").read_text())
    assert rec["tflite_sha256"] == sha256_file(MODELS / "shapes-det-640.split.float32.tflite")
    assert rec["layout"] == "split" and rec["check_vs_onnx"]["boxes"]["tflite_shape"] == [1, 4, 8400]


def test_lookup_refuses_stale_records(tmp_path):
    src = tmp_path / "shapes-det.onnx"
    shutil.copy(MODELS / "shapes-det.onnx", src)
    for ext in (".tflite", ".json"):
        shutil.copy(MODELS / f"shapes-det.split.float32{ext}", tmp_path / f"shapes-det.split.float32{ext}")
    sha = sha256_file(src)
    assert convert.find(src, sha, "split", None) is not None
    assert convert.find(src, sha, "monolithic", None) is None  # another layout
    assert convert.find(src, "0" * 64, "split", None) is None  # another source
    rec_path = tmp_path / "shapes-det.split.float32.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "layout_version": convert.LAYOUT_VERSION + 1}))
    assert convert.find(src, sha, "split", None) is None  # made by another version of the rewrite
    rec_path.write_text(json.dumps(rec))
    with open(tmp_path / "shapes-det.split.float32.tflite", "ab") as f:
        f.write(b"x")
    assert convert.find(src, sha, "split", None) is None  # the file changed after its record


def test_missing_converter_says_how_to_set_it_up(tmp_path, monkeypatch):
    src = tmp_path / "m.onnx"
    shutil.copy(MODELS / "shapes-det.onnx", src)
    monkeypatch.setenv("QHARNESS_ONNX2TF", str(tmp_path / "no-such-venv"))
    with pytest.raises(convert.ConverterMissing, match="python -m quantizer.convert setup"):
        convert.convert(src, "split", cache=tmp_path / "cache")


@NEEDS_TF
@pytest.mark.parametrize("lay", ["split", "monolithic"])
def test_onnx2tf_conversion(tmp_path, lay):
    src = tmp_path / "shapes-seg.onnx"
    shutil.copy(MODELS / "shapes-seg.onnx", src)
    cache = tmp_path / "cache"
    made = convert.convert(src, lay, cache=cache, log=print)
    assert made.path.parent == cache and made.record["layout"] == lay
    assert all(v["max_rel_error"] < convert.MAX_REL_ERROR for v in made.record["check_vs_onnx"].values())
    from validator.runners import open_runner

    r = open_runner(made.path)  # metadata carried: names without flags
    assert r.metadata["names"][0] == "circle" and r.input.layout == "NHWC"
    again = convert.convert(src, lay, cache=cache)  # found, not made again
    assert again.path == made.path and again.record == made.record
    # the committed fixture is this conversion, byte for byte (onnx2tf's output is deterministic)
    committed = convert.find(MODELS / "shapes-seg.onnx", sha256_file(MODELS / "shapes-seg.onnx"), lay, None)
    assert committed.record["tflite_sha256"] == made.record["tflite_sha256"]
