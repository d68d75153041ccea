"""The quantized-I/O fixtures ``shapes-{det,seg}.int8io.tflite`` (made by ``tools/make_int8_io_fixture.py`` from
the committed ``shapes-{det,seg}.int8.tflite``; tests/fixtures/README.md):

* their tensors are the documented ones (int8 / uint8 input, int8 outputs, the source's own quantization),
  nothing else in the graph changed, and the script reproduces the committed files byte for byte;
* on real images they give the source model's outputs (exactly, when fed the int8 values the source's own
  QUANTIZE makes; within one output step with the validator's rounding of the pixels);
* end to end through ``validate`` they score what the float-I/O model scores, prediction for prediction.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS, ROOT
from validator.cli import main as validate_main

TOOL = ROOT / "tools" / "make_int8_io_fixture.py"
N_IMAGES = 40
IN_SCALE = 0.0036404827  # the source's input QUANTIZE: 0..1 calibrated on the val split (max ~0.928)
# kind -> (input name, dtype, zero point), [(output name, shape, scale, zero point)]
EXPECTED = {
    "det": (("serving_default_args_0_quantized", "int8", -128),
            [("serving_default_output_0_output", [1, 10, 1344], 0.007988906, -127)]),
    "seg": (("serving_default_args_0_quantized_uint8", "uint8", 0),
            [("serving_default_output_0_output", [1, 42, 1344], 0.023785688, 16),
             ("serving_default_output_1_output", [1, 32, 64, 64], 0.02939464, -119)]),
}
KINDS = list(EXPECTED)


@functools.cache
def tool():
    spec = importlib.util.spec_from_file_location("make_int8_io_fixture", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _interp(path_or_bytes, **kw):
    from ai_edge_litert.interpreter import Interpreter

    src = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": str(path_or_bytes)}
    it = Interpreter(**src, num_threads=1, **kw)
    it.allocate_tensors()
    return it


def _zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


# ------------------------------------------------------------------------------------------ the files
@pytest.mark.parametrize("kind", KINDS)
def test_tensors_are_the_documented_ones(kind):
    (in_name, in_dtype, in_zp), outs = EXPECTED[kind]
    src = _interp(MODELS / f"shapes-{kind}.int8.tflite")
    it = _interp(MODELS / f"shapes-{kind}.int8io.tflite")
    (d,) = it.get_input_details()
    assert (d["name"], [int(v) for v in d["shape"]], np.dtype(d["dtype"]).name) == (in_name, [1, 3, 256, 256], in_dtype)
    assert d["quantization"][0] == pytest.approx(IN_SCALE, rel=1e-6) and d["quantization"][1] == in_zp
    got = [(o["name"], [int(v) for v in o["shape"]], np.dtype(o["dtype"]).name) for o in it.get_output_details()]
    assert got == [(n, shape, "int8") for n, shape, _, _ in outs]
    for o, (_, _, scale, zp) in zip(it.get_output_details(), outs, strict=True):
        assert o["quantization"][0] == pytest.approx(scale, rel=1e-6) and o["quantization"][1] == zp
    # same signature (names), same Ultralytics metadata zip as the source
    assert it.get_signature_list() == src.get_signature_list()
    assert _zip(MODELS / f"shapes-{kind}.int8io.tflite") == _zip(MODELS / f"shapes-{kind}.int8.tflite")


def _ops(model) -> list[tuple]:
    sg = model.subgraphs[0]
    t = tool()

    def names(v):
        return tuple(t._text(sg.tensors[int(i)].name) if i >= 0 else None for i in v)

    return [(t._op_name(model, op), names(op.inputs), names(op.outputs), op.builtinOptionsType) for op in sg.operators]


def _tensors(model, buffers) -> dict[str, tuple]:
    out = {}
    for tn in model.subgraphs[0].tensors:
        b = buffers[tn.buffer]
        data = b"" if b.data is None else bytes(b.data)
        out[tool()._text(tn.name)] = (tn.type, tuple(int(v) for v in tn.shape), tool()._quant(tn), data,
                                      int(b.offset), int(b.size))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_else_changed(kind):
    """Source minus its leading QUANTIZE and trailing DEQUANTIZE ops (plus, for the uint8 input, the new
    uint8 -> int8 QUANTIZE) is the new graph, op for op; every kept tensor and buffer is the same."""
    t = tool()
    src = t.load((MODELS / f"shapes-{kind}.int8.tflite").read_bytes())
    new = t.load((MODELS / f"shapes-{kind}.int8io.tflite").read_bytes())
    a, b = _ops(src), _ops(new)
    assert a[0][0] == "QUANTIZE" and a[0][1] == ("serving_default_args_0",)
    n_out = len(src.subgraphs[0].outputs)
    dequant = [k for k, op in enumerate(a) if op[0] == "DEQUANTIZE"]
    assert len(dequant) == n_out
    if kind == "seg":  # the uint8-input patch
        assert b[0] == ("QUANTIZE", ("serving_default_args_0_quantized_uint8",),
                        ("serving_default_args_0_quantized",), 0)
        b = b[1:]
    assert b == [op for k, op in enumerate(a) if k != 0 and k not in dequant]
    ta, tb = _tensors(src, src.buffers), _tensors(new, new.buffers)
    added = {"serving_default_args_0_quantized_uint8"} if kind == "seg" else set()
    dropped = {"serving_default_args_0"} | {f"serving_default_output_{i}_output_dequant" for i in range(n_out)}
    assert set(tb) == (set(ta) - dropped) | added
    assert all(tb[n] == ta[n] for n in tb if n not in added)
    assert [m.name for m in new.metadata] == [m.name for m in src.metadata]
    assert len(new.buffers) == len(src.buffers) and new.description == src.description


@pytest.mark.parametrize("kind", KINDS)
def test_script_reproduces_the_committed_files(kind):
    out, changes = tool().convert((MODELS / f"shapes-{kind}.int8.tflite").read_bytes(), uint8=kind == "seg")
    assert out == (MODELS / f"shapes-{kind}.int8io.tflite").read_bytes()
    assert any("uint8-input patch" in c for c in changes) == (kind == "seg")


def test_uint8_input_in_place_when_the_consumer_accepts_it(tmp_path):
    """A DEQUANTIZE reads uint8 as well as int8: the input's type and zero point change, no op is added."""
    from tests.tiny_models import tflite_model

    path = tflite_model(tmp_path / "tiny.tflite", [1, 8, 8, 3], "int8", input_quant=(1 / 255, -128), gain=1.0,
                        outputs={"out": (np.zeros((1, 4), np.float32), "int8", (0.01, 0))},
                        zip_metadata={"names": {"0": "a"}})
    data = path.read_bytes()
    with pytest.raises(ValueError, match="no float I/O"):
        tool().to_quantized_io(tool().load(data))
    model = tool().load(data)
    n_ops = len(model.subgraphs[0].operators)
    changes = tool().uint8_input(model, data)
    assert "in place" in changes[0]
    assert len(model.subgraphs[0].operators) == n_ops
    out = tool().serialize(model, data)
    (d,) = _interp(out).get_input_details()
    assert np.dtype(d["dtype"]).name == "uint8" and d["quantization"][1] == 0
    x = np.random.default_rng(1).integers(-128, 128, size=(1, 8, 8, 3), dtype=np.int8)
    ya = tool()._run(_interp(data), x)
    yb = tool()._run(_interp(out), (x.astype(np.int16) + 128).astype(np.uint8))
    assert all(np.array_equal(p, q) for p, q in zip(ya, yb, strict=True))
    assert tool()._zip_members(out) == tool()._zip_members(data)


# ------------------------------------------------------------------------------------------ real images
@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("heldout-int8io")
    generate(out, ShapesConfig(images=N_IMAGES, seed=3))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_equal_the_source_model(kind, heldout):
    from validator.data.preprocess import InputMaker, choose_transform, letterbox, load_image
    from validator.tensors import InputSpec

    src = _interp(MODELS / f"shapes-{kind}.int8.tflite", experimental_preserve_all_tensors=True)
    new = _interp(MODELS / f"shapes-{kind}.int8io.tflite")
    si, ni = src.get_input_details()[0], new.get_input_details()[0]
    fspec = InputSpec(si["name"], (1, 3, 256, 256), "float32", "NCHW", (256, 256))
    qspec = InputSpec(ni["name"], (1, 3, 256, 256), np.dtype(ni["dtype"]).name, "NCHW", (256, 256),
                      float(ni["quantization"][0]), int(ni["quantization"][1]))
    make_f, make_q = InputMaker(fspec, choose_transform(fspec)), InputMaker(qspec, choose_transform(qspec))
    q_index = next(d["index"] for d in src.get_tensor_details() if d["name"] == "serving_default_args_0_quantized")
    for path in sorted((heldout / "images").glob("*.jpg"))[:4]:
        canvas, _ = letterbox(load_image(path), (256, 256))
        ref = tool()._run(src, make_f(canvas).copy())
        q_src = src.get_tensor(q_index).copy()  # what the source's QUANTIZE made of the float input
        exact = tool()._run(new, q_src if qspec.dtype == "int8" else (q_src.astype(np.int16) + 128).astype(np.uint8))
        ours = tool()._run(new, make_q(canvas).copy())  # the validator's rounding of the pixels
        for o, r, e, v in zip(new.get_output_details(), ref, exact, ours, strict=True):
            scale, zp = o["quantization"]
            assert np.array_equal((e.astype(np.float32) - zp) * np.float32(scale), r)  # DEQUANTIZE is exact
            steps = np.abs(v.astype(np.int32) - np.round(r / scale + zp).astype(np.int32))
            assert steps.max() <= 1 and np.count_nonzero(steps) <= 1e-3 * steps.size


# ------------------------------------------------------------------------------------------ end to end
def _iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _matched_share(preds, partners) -> float:
    """Share of ``preds`` with a partner (same image and class, box IoU >= 0.9) in ``partners``."""
    by_key: dict = {}
    for p in partners:
        by_key.setdefault((p["image_id"], p["category_id"]), []).append(p["bbox"])
    hits = sum(any(_iou(p["bbox"], q) >= 0.9 for q in by_key.get((p["image_id"], p["category_id"]), []))
               for p in preds)
    return hits / max(len(preds), 1)


@pytest.fixture(scope="module", params=KINDS)
def e2e(request, heldout, tmp_path_factory):
    kind = request.param
    out = tmp_path_factory.mktemp(f"e2e-int8io-{kind}")
    with contextlib.redirect_stdout(io.StringIO()):
        code = validate_main(["--model", str(MODELS / f"shapes-{kind}.int8.tflite"),
                              "--model", str(MODELS / f"shapes-{kind}.int8io.tflite"),
                              "--data", str(heldout), "--out", str(out), "--no-cache"])
    return kind, code, out


def test_validate_runs_and_reads_the_quantized_input(e2e):
    kind, code, out = e2e
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["images"] == N_IMAGES
    ref, new = summary["models"]
    assert new["label"] == f"TFLite INT8 (shapes-{kind}.int8io)"
    assert new["precision"]["label"] == "INT8"
    (_, in_dtype, in_zp), outs = EXPECTED[kind]
    assert new["input"]["dtype"] == in_dtype and new["input"]["quantization"][1] == in_zp
    assert [o["dtype"] for o in new["outputs"]] == ["int8"] * len(outs)
    # the input's quantization spans 0..0.928 (the 0..1 convention, calibrated on images whose brightest
    # pixels stay below 255): pixels / 255, rounded to the input's scale, not raw pixels
    scale, zp = new["input"]["quantization"]
    info = np.iinfo(in_dtype)
    lo, hi = (int(info.min) - zp) * scale, (int(info.max) - zp) * scale
    assert lo == 0 and 0.9 < hi < 1
    t = new["input_transform"]
    assert (t["range"], t["raw_pixels"], t["offset"]) == ("0,1", False, [0.0] * 3)
    assert t["gain"] == [round(1 / 255, 9)] * 3
    assert t["source"].startswith(f"{in_dtype} input quantization (scale 0.00364048, zero point {in_zp})")
    assert ref["input_transform"]["range"] == "0,1"
    assert new["box_units"] == ref["box_units"] and new["num_predictions"] > 0


def test_validate_scores_equal_the_float_io_model(e2e):
    kind, code, out = e2e
    assert code == 0
    ref, new = json.loads((out / "summary.json").read_text())["models"]
    for iou_type in (["bbox", "segm"] if kind == "seg" else ["bbox"]):
        for key in ("mAP50", "mAP50_95"):
            assert abs(new["metrics"][iou_type][key] - ref["metrics"][iou_type][key]) <= 0.005, (iou_type, key)
    pa = json.loads((out / ref["predictions"]).read_text())
    pb = json.loads((out / new["predictions"]).read_text())
    assert abs(len(pa) - len(pb)) <= 0.05 * len(pa)
    assert _matched_share(pb, pa) >= 0.9 and _matched_share(pa, pb) >= 0.9
