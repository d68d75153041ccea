"""quantizer.emit_tflite on the committed float TFLite fixture (no TensorFlow): the scales written are the
ones our ranges imply (read back), the uint8-input patch changes nothing but the input type, degenerate
(constant) tensors give working models once sanitised, recipes and reference variants."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from quantizer import emit_tflite as et
from quantizer.calibration import SampleSource, TFLiteTap, calibration_images, collect
from quantizer.strategies import parse_strategy, ranges
from tests.conftest import MODELS
from validator.data.preprocess import choose_transform
from validator.runners import open_runner

FLOAT = MODELS / "shapes-det.split.float32.tflite"
N = 8


def interp(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=2)
    it.allocate_tensors()
    return it


def run(it, x):
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


@functools.cache
def _stats(images_dir: str, model: str = str(FLOAT)):
    r = open_runner(model)
    src = SampleSource(calibration_images(images_dir), r.input, choose_transform(r.input))
    return collect(TFLiteTap(model), src, [N], bins=1024)[N], src


@pytest.fixture(scope="module")
def calib(shapes_small):
    return _stats(str(shapes_small))


@pytest.fixture(scope="module")
def minmax_model(calib):
    st, _ = calib
    rng = ranges(parse_strategy("minmax"), st.tensors())
    return rng, et.quantize_static(FLOAT.read_bytes(), rng, et.load_recipe("static_int8"), (0.0, 1.0))


def _ops(data: bytes) -> dict[str, str]:
    """output tensor name -> op name of its producer."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(data, 0)
    sg = m.Subgraphs(0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    out = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        for j in range(op.OutputsLength()):
            out[sg.Tensors(op.Outputs(j)).Name().decode()] = name
    return out


def test_written_scales_are_our_ranges(minmax_model):
    rng, data = minmax_model
    q = et.tensor_quantization(data)
    ops = _ops(data)
    convs = [n for n in rng if ops.get(n) in ("CONV_2D", "DEPTHWISE_CONV_2D") and q.get(n, {}).get("dtype") == "int8"]
    assert len(convs) >= 60
    for name in convs:
        lo, hi = rng[name]
        scale = (hi - lo) / 255
        assert q[name]["scales"] == [pytest.approx(scale, rel=1e-6)], name
        assert q[name]["zero_points"] == [int(np.clip(np.round(-128 - lo / scale), -128, 127))], name
    inp = et.io_description(data)["inputs"][0]
    assert (inp["dtype"], inp["scale"], inp["zero_point"]) == ("int8", pytest.approx(1 / 255), -128)


def test_granularity_sets_the_weight_scales(calib):
    st, _ = calib
    rng = ranges(parse_strategy("minmax"), st.tensors())
    counts = {}
    for gran in ("channel", "tensor"):
        data = et.quantize_static(FLOAT.read_bytes(), rng, et.with_granularity(et.load_recipe("static_int8"), gran),
                                  (0.0, 1.0))
        q = et.tensor_quantization(data)
        weights = [v for v in q.values() if v["dtype"] == "int8" and len(v["scales"]) > 0]
        counts[gran] = max(len(v["scales"]) for v in weights)
    assert counts == {"channel": 256, "tensor": 1}


def test_uint8_input_patch_is_bit_identical(minmax_model):
    _, data = minmax_model
    u = et.uint8_input(data)
    io = et.io_description(u)
    assert (io["inputs"][0]["dtype"], io["inputs"][0]["scale"], io["inputs"][0]["zero_point"]) == \
        ("uint8", pytest.approx(1 / 255), 0)
    assert io["outputs"] == et.io_description(data)["outputs"]
    x = np.random.default_rng(0).integers(-128, 128, (1, 256, 256, 3)).astype(np.int8)
    a, b = run(interp(data), x), run(interp(u), (x.astype(np.int16) + 128).astype(np.uint8))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    sig = interp(u).get_signature_list()["serving_default"]
    assert sig["inputs"] == ["images"]


def _dead_conv_model() -> tuple[bytes, list[str]]:
    """The float fixture with the convolution of one residual branch (a C2f bottleneck's last conv, whose
    SiLU output is added to the shortcut) zeroed, weights and bias: its output and the SiLU product after it
    are constant zero on every image, as some tensors of a random-weight YOLOv8n are; the model still works
    through the shortcut."""
    from ai_edge_litert import schema_py_generated as s

    data = FLOAT.read_bytes()
    m = s.ModelT.InitFromObj(s.Model.GetRootAs(data, 0))
    sg = m.subgraphs[0]

    def code(op):
        return m.operatorCodes[op.opcodeIndex].builtinCode

    users: dict[int, list] = {}
    for op in sg.operators:
        for t in op.inputs:
            users.setdefault(int(t), []).append(op)
    for op in sg.operators:
        if code(op) != s.BuiltinOperator.CONV_2D:
            continue
        out = int(op.outputs[0])
        muls = [u for u in users.get(out, []) if code(u) == s.BuiltinOperator.MUL]
        if muls and any(code(u) == s.BuiltinOperator.ADD for u in users.get(int(muls[0].outputs[0]), [])):
            for t in op.inputs[1:]:
                buf = m.buffers[sg.tensors[t].buffer]
                buf.data = np.zeros_like(buf.data)
            return et._pack(m), [sg.tensors[out].name.decode(), sg.tensors[int(muls[0].outputs[0])].name.decode()]
    raise AssertionError("no residual-branch convolution found")


def test_constant_zero_tensors_give_a_working_model_once_sanitised(tmp_path, shapes_small):
    data, dead = _dead_conv_model()
    path = tmp_path / "dead.float32.tflite"
    path.write_bytes(data)
    st, src = _stats(str(shapes_small), str(path))
    for name in dead:
        raw = st.tensors()[name]
        assert (raw.min, raw.max) == (0.0, 0.0)  # the degenerate case: a zero scale unless sanitised
    rng = ranges(parse_strategy("minmax"), st.tensors())
    assert [rng[n] for n in dead] == [pytest.approx((0.0, 0.01))] * 2
    q = et.quantize_static(data, rng, et.load_recipe("static_int8"), (0.0, 1.0))
    fl, it = interp(data), interp(q)
    inp = it.get_input_details()[0]
    for _, x in src(0, 3):
        ref = run(fl, x)
        xi = np.clip(np.round(x / inp["quantization"][0]) + inp["quantization"][1], -128, 127).astype(np.int8)
        got = run(it, xi)
        for (r, g), d in zip(zip(ref, got, strict=True), it.get_output_details(), strict=True):
            s, z = d["quantization"]
            deq = (g.astype(np.float32) - z) * s
            assert np.isfinite(deq).all()
            assert len(np.unique(g)) > 5  # not constant (a broken scale gives one value: 0.5 everywhere)
            noise = np.mean((deq - r) ** 2)
            assert 10 * np.log10(np.mean(r ** 2) / noise) > 10  # tracks the float model


# ------------------------------------------------------------------------------------------ recipes
def test_packaged_recipes_load_and_granularity_applies():
    for name in et.RECIPES:
        rec = et.load_recipe(name)
        assert isinstance(rec, list) and rec
    t = et.with_granularity(et.load_recipe("static_int8"), "tensor")
    assert t[0]["op_config"]["weight_tensor_config"]["granularity"] == "TENSORWISE"
    assert et.load_recipe("static_int8")[0]["op_config"]["weight_tensor_config"]["granularity"] == "CHANNELWISE"
    fp16 = et.with_granularity(et.load_recipe("fp16"), "channel")  # float weights: untouched
    assert fp16[0]["op_config"]["weight_tensor_config"]["granularity"] == "TENSORWISE"


@pytest.mark.parametrize("content, msg", [
    ("{", "invalid JSON"), ("{}", "non-empty JSON list"), ('[{"regex": ".*"}]', "lacks operation"),
    ('[{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize"}]', "lacks op_config"),
])
def test_bad_recipes(tmp_path, content, msg):
    p = tmp_path / "r.json"
    p.write_text(content)
    with pytest.raises(et.RecipeError, match=msg):
        et.load_recipe(p)


def test_no_quantize_rule_keeps_ops_in_float(calib):
    st, _ = calib
    rng = ranges(parse_strategy("minmax"), st.tensors())
    rec = et.load_recipe("static_int8") + [{"regex": ".*", "operation": "LOGISTIC", "algorithm_key": "no_quantize"}]
    data = et.quantize_static(FLOAT.read_bytes(), rng, rec, (0.0, 1.0))
    ops = _ops(data)
    q = et.tensor_quantization(data)
    logistic = [n for n, op in ops.items() if op == "LOGISTIC"]
    assert logistic and all(q[n]["dtype"] == "float32" for n in logistic)


@pytest.mark.parametrize("kind, label", [("fp16", "float16"), ("dynamic", "INT8 dynamic-range")])
def test_reference_variants(kind, label, tmp_path):
    data = et.reference(FLOAT.read_bytes(), kind)
    p = tmp_path / f"{kind}.tflite"
    p.write_bytes(et.append_metadata(data, {"names": {"0": "circle"}, "imgsz": [256, 256]}))
    r = open_runner(p)
    assert r.precision.label == label
    assert r.input.dtype == "float32"
    assert r.metadata["names"] == ["circle"]
    x = np.random.default_rng(1).random((1, 256, 256, 3), dtype=np.float32)
    ref = open_runner(FLOAT).run(x)
    got = r.run(x)
    for k in ref:
        assert np.abs(got[k] - ref[k]).max() < (0.01 if kind == "fp16" else 0.5)


def test_metadata_round_trip(minmax_model):
    _, data = minmax_model
    md = {"names": {"0": "a", "1": "b"}, "imgsz": [256, 256], "task": "detect", "layout": "split"}
    with_md = et.append_metadata(data, md)
    assert et.read_metadata(with_md) == md
    assert et.strip_appended(with_md) == data
    assert et.append_metadata(with_md, md) == with_md  # replaces, does not stack
    assert et.read_metadata(data) is None
