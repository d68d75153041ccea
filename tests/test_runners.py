"""Runners: the input spec they report, the tensor they are fed, and the outputs they hand back.

Every model here is built by tests/tiny_models.py, so each expected number is known by construction:
outputs are constants (+ gain * mean of the fed input), quantized with parameters the test chose.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tests.tiny_models import onnx_model, quantize, tflite_model
from validator.data.labels import parse_labels
from validator.data.preprocess import letterbox, to_input
from validator.errors import InputError
from validator.runners import open_runner
from validator.runners.tflite_file import read_tflite_file

CONST = np.array([[[-3.0, 0.0, 1.5, 7.0], [2.0, -1.0, 10.0, 0.5]]], np.float32)  # [1, 2, 4]


# --------------------------------------------------------------------------------------- input specs
@pytest.mark.parametrize("shape, layout, hw", [
    ([1, 3, 64, 48], "NCHW", (64, 48)),
    ([1, 64, 48, 3], "NHWC", (64, 48)),
])
def test_onnx_input_spec(tmp_path, shape, layout, hw):
    r = open_runner(onnx_model(tmp_path / "m.onnx", shape, outputs={"out": CONST}))
    assert r.kind == "onnx"
    assert (r.input.layout, r.input.hw, r.input.dtype) == (layout, hw, "float32")
    assert tuple(r.input.shape) == tuple(shape)
    assert (r.input.scale, r.input.zero_point) == (0.0, 0)
    assert [(o.name, tuple(o.shape), o.dtype) for o in r.outputs] == [("out", (1, 2, 4), "float32")]


def test_onnx_dynamic_hw_from_imgsz_metadata(tmp_path):
    p = onnx_model(tmp_path / "d.onnx", ["batch", 3, "h", "w"], outputs={"out": CONST}, metadata={"imgsz": "[64, 96]"})
    r = open_runner(p)
    assert r.input.hw == (64, 96) and tuple(r.input.shape) == (1, 3, 64, 96)


def test_onnx_dynamic_hw_without_metadata_is_input_error(tmp_path):
    p = onnx_model(tmp_path / "d.onnx", [1, 3, "h", "w"], outputs={"out": CONST})
    with pytest.raises(InputError) as e:
        open_runner(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("shape, dtype, quant, layout", [
    ([1, 64, 48, 3], "float32", None, "NHWC"),
    ([1, 64, 48, 3], "uint8", (1 / 255, 0), "NHWC"),
    ([1, 3, 64, 48], "int8", (1 / 255, -128), "NCHW"),
    ([1, 3, 64, 48], "uint8", (0.5, 3), "NCHW"),
])
def test_tflite_input_spec(tmp_path, shape, dtype, quant, layout):
    p = tflite_model(tmp_path / "m.tflite", shape, dtype, quant, outputs={"out": (CONST, "float32", None)})
    r = open_runner(p)
    assert r.kind == "tflite"
    assert (r.input.layout, r.input.hw, r.input.dtype) == (layout, (64, 48), dtype)
    assert tuple(r.input.shape) == tuple(shape)
    scale, zp = quant or (0.0, 0)
    assert r.input.scale == pytest.approx(scale, rel=1e-6) and r.input.zero_point == zp


# --------------------------------------------------------------------------------------- outputs
def test_tflite_outputs_dequantized_with_their_own_parameters(tmp_path):
    """Two quantized outputs with different (scale, zp); values chosen to be exact in both grids."""
    a = CONST  # scale 0.5, zp -10: q = v/0.5 - 10 -> -16, -10, -7, 4, -6, -12, 10, -9
    b = np.array([[0.25, 1.0, 2.5, 0.0]], np.float32)  # uint8, scale 0.25, zp 128: q = 129, 132, 138, 128
    p = tflite_model(tmp_path / "q.tflite", [1, 64, 64, 3], "uint8", (1 / 255, 0), outputs={
        "a": (a, "int8", (0.5, -10)), "b": (b, "uint8", (0.25, 128)), "c": (a * 3, "float32", None)})
    r = open_runner(p)
    specs = {o.name: o for o in r.outputs}
    assert (specs["a"].dtype, specs["a"].scale, specs["a"].zero_point) == ("int8", 0.5, -10)
    assert (specs["b"].dtype, specs["b"].scale, specs["b"].zero_point) == ("uint8", 0.25, 128)
    assert (specs["c"].dtype, specs["c"].scale) == ("float32", 0.0)
    assert tuple(specs["b"].shape) == (1, 4)
    # the raw integers are what the reference quantization says (a sanity check of the tiny model itself)
    np.testing.assert_array_equal(quantize(a, 0.5, -10, "int8").ravel(), [-16, -10, -7, 4, -6, -12, 10, -9])
    out = r.run(np.zeros((1, 64, 64, 3), np.uint8))
    assert set(out) == {"a", "b", "c"}
    for v in out.values():
        assert v.dtype == np.float32
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    np.testing.assert_allclose(out["c"], a * 3, rtol=1e-6)


def test_tflite_quantized_output_saturates(tmp_path):
    """int8 scale 0.5 zp -10 covers [-59, 68.5]: 100 saturates to q=127 -> 68.5."""
    p = tflite_model(tmp_path / "s.tflite", [1, 8, 8, 3], outputs={
        "a": (np.array([[100.0, -100.0]], np.float32), "int8", (0.5, -10))})
    out = open_runner(p).run(np.zeros((1, 8, 8, 3), np.float32))
    np.testing.assert_array_equal(out["a"], [[68.5, -59.0]])


def test_onnx_outputs_are_float32(tmp_path):
    p = onnx_model(tmp_path / "m.onnx", [1, 3, 16, 16], outputs={"a": CONST, "n": np.array([3], np.int64)})
    r = open_runner(p)
    assert {o.name: o.dtype for o in r.outputs} == {"a": "float32", "n": "int64"}
    out = r.run(np.zeros((1, 3, 16, 16), np.float32))
    assert out["a"].dtype == np.float32 and out["n"].dtype == np.float32
    np.testing.assert_array_equal(out["a"], CONST)
    np.testing.assert_array_equal(out["n"], [3.0])


def test_tflite_outputs_are_copies(tmp_path):
    """The interpreter reuses its buffers: a second run must not change what the first returned."""
    p = tflite_model(tmp_path / "g.tflite", [1, 8, 8, 3], outputs={"a": (CONST, "float32", None)}, gain=1.0)
    r = open_runner(p)
    first = r.run(np.zeros((1, 8, 8, 3), np.float32))["a"].copy()
    kept = r.run(np.zeros((1, 8, 8, 3), np.float32))["a"]
    r.run(np.ones((1, 8, 8, 3), np.float32))
    np.testing.assert_array_equal(kept, first)


# --------------------------------------------------------------------------------------- metadata
def test_onnx_metadata_props(tmp_path):
    md = {"names": "{0: 'circle', 1: 'triangle'}", "imgsz": "[64, 64]", "task": "detect", "stride": "32",
          "author": "someone"}
    r = open_runner(onnx_model(tmp_path / "m.onnx", [1, 3, 64, 64], outputs={"out": CONST}, metadata=md))
    assert r.metadata["names"] == ["circle", "triangle"]
    assert r.metadata["imgsz"] == [64, 64]
    assert r.metadata["task"] == "detect"
    assert r.metadata["stride"] == 32
    assert r.metadata["source"]


def test_onnx_without_metadata(tmp_path):
    r = open_runner(onnx_model(tmp_path / "m.onnx", [1, 3, 64, 64], outputs={"out": CONST}))
    assert r.metadata["names"] is None and r.metadata["imgsz"] is None and r.metadata["source"] is None


def test_tflite_zip_metadata(tmp_path):
    md = {"names": {"0": "circle", "1": "triangle", "2": "square"}, "imgsz": [64, 64], "task": "segment",
          "stride": 32}
    p = tflite_model(tmp_path / "m.tflite", [1, 64, 64, 3], outputs={"out": (CONST, "float32", None)},
                     zip_metadata=md)
    assert zipfile.is_zipfile(p)
    r = open_runner(p)  # the appended zip must not disturb the interpreter
    for got in (r.metadata, read_tflite_file(p)):
        assert got["names"] == ["circle", "triangle", "square"]
        assert got["imgsz"] == [64, 64] and got["task"] == "segment" and got["stride"] == 32
        assert "metadata.json" in got["source"]


def test_tflite_zip_labels_file(tmp_path):
    p = tflite_model(tmp_path / "m.tflite", [1, 64, 64, 3], outputs={"out": (CONST, "float32", None)})
    with zipfile.ZipFile(p, "a") as z:
        z.writestr("labelmap.txt", "circle\ntriangle\n\n")
    lf = read_tflite_file(p)["label_file"]
    assert lf["name"] == "labelmap.txt" and "appended" in lf["where"]
    assert parse_labels(lf["text"], lf["where"]).names == {0: "circle", 1: "triangle"}


def test_tflite_without_metadata(tmp_path):
    p = tflite_model(tmp_path / "m.tflite", [1, 64, 64, 3], outputs={"out": (CONST, "float32", None)})
    md = read_tflite_file(p)
    assert md["names"] is None and md["label_file"] is None and md["normalization"] is None and md["source"] is None
    assert open_runner(p).metadata["names"] is None


def test_zip_metadata_corrupt_json_is_ignored(tmp_path):
    p = tflite_model(tmp_path / "m.tflite", [1, 64, 64, 3], outputs={"out": (CONST, "float32", None)})
    with zipfile.ZipFile(p, "a") as z:
        z.writestr("metadata.json", "{not json")
    assert read_tflite_file(p)["names"] is None


def test_tflite_dynamic_hw_from_zip_imgsz(tmp_path):
    """A [1,-1,-1,3] input is resized to the exported imgsz and then runs at that size."""
    p = tflite_model(tmp_path / "d.tflite", [1, 1, 1, 3], outputs={"m": (np.zeros([1], np.float32), "float32", None)},
                     gain=1.0, input_signature=[1, -1, -1, 3], zip_metadata={"imgsz": [32, 48]})
    r = open_runner(p)
    assert r.input.hw == (32, 48) and tuple(r.input.shape) == (1, 32, 48, 3)
    assert r.run(np.full((1, 32, 48, 3), 0.5, np.float32))["m"][0] == pytest.approx(0.5)


def test_tflite_dynamic_hw_without_metadata_is_input_error(tmp_path):
    p = tflite_model(tmp_path / "d.tflite", [1, 1, 1, 3], outputs={"m": (np.zeros([1], np.float32), "float32", None)},
                     input_signature=[1, -1, -1, 3])
    with pytest.raises(InputError) as e:
        open_runner(p)
    assert "dynamic" in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_imgsz_metadata_does_not_override_a_concrete_input_size(tmp_path):
    """The model's own input shape is the truth; imgsz metadata only fills dynamic dimensions."""
    p = tflite_model(tmp_path / "m.tflite", [1, 32, 48, 3], outputs={"out": (CONST, "float32", None)},
                     zip_metadata={"imgsz": [64, 64]})
    assert open_runner(p).input.hw == (32, 48)


# --------------------------------------------------------------------------------------- fed input
V = 51  # grey level of the test image: 51/255 = 0.2 exactly in the float model's arithmetic


def _fed_mean(path, v: int = V) -> tuple[float, object]:
    r = open_runner(path)
    img = np.full((100, 80, 3), v, np.uint8)  # letterboxed: content and pad both matter
    canvas, _ = letterbox(img, r.input.hw)
    x = to_input(canvas, r.input)
    assert tuple(x.shape) == tuple(r.input.shape) and x.dtype == np.dtype(r.input.dtype)
    return float(r.run(x)["m"].ravel()[0]), canvas


def _expected(canvas: np.ndarray) -> float:
    return float(canvas.astype(np.float64).mean() / 255.0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fed_float_onnx(tmp_path, layout):
    shape = [1, 3, 64, 64] if layout == "NCHW" else [1, 64, 64, 3]
    p = onnx_model(tmp_path / "f.onnx", shape, outputs={"m": np.zeros([1], np.float32)}, gain=1.0)
    got, canvas = _fed_mean(p)
    assert got == pytest.approx(_expected(canvas), abs=1e-5)


def test_fed_float_onnx_uniform_image_is_v_over_255(tmp_path):
    """A canvas-sized uniform image has no padding: the mean is exactly v/255."""
    p = onnx_model(tmp_path / "f.onnx", [1, 3, 64, 64], outputs={"m": np.zeros([1], np.float32)}, gain=1.0)
    r = open_runner(p)
    canvas, _ = letterbox(np.full((64, 64, 3), V, np.uint8), r.input.hw)
    assert float(r.run(to_input(canvas, r.input))["m"][0]) == pytest.approx(V / 255, abs=1e-6)


def test_fed_float16_onnx(tmp_path):
    p = onnx_model(tmp_path / "h.onnx", [1, 3, 64, 64], "float16", outputs={"m": np.zeros([1], np.float32)},
                   gain=1.0)
    got, canvas = _fed_mean(p)
    assert got == pytest.approx(_expected(canvas), abs=1e-3)


def test_fed_uint8_onnx_is_raw_pixels(tmp_path):
    """An unquantized uint8 ONNX input takes raw 0-255 pixels (the model normalises itself)."""
    p = onnx_model(tmp_path / "u.onnx", [1, 64, 64, 3], "uint8", outputs={"m": np.zeros([1], np.float32)}, gain=1.0)
    got, canvas = _fed_mean(p)
    assert got == pytest.approx(_expected(canvas) * 255, abs=1e-3)


@pytest.mark.parametrize("dtype, quant, layout", [
    ("float32", None, "NHWC"),
    ("float32", None, "NCHW"),
    ("uint8", (1 / 255, 0), "NHWC"),
    ("int8", (1 / 255, -128), "NHWC"),
    ("int8", (1 / 255, -128), "NCHW"),
    ("uint8", (1 / 128, 7), "NHWC"),  # a scale that is not 1/255: the pixel must be re-quantized
    ("int8", (1 / 200, -100), "NCHW"),
])
def test_fed_tflite(tmp_path, dtype, quant, layout):
    """The model dequantizes its own input, so its mean must be the canvas mean / 255 within one step."""
    shape = [1, 3, 64, 64] if layout == "NCHW" else [1, 64, 64, 3]
    p = tflite_model(tmp_path / "t.tflite", shape, dtype, quant, outputs={"m": (np.zeros([1], np.float32),
                                                                                "float32", None)}, gain=1.0)
    got, canvas = _fed_mean(p)
    step = quant[0] if quant else 1e-5
    assert abs(got - _expected(canvas)) <= step


def test_fed_uniform_int8_is_v_over_255(tmp_path):
    """No letterbox padding: an int8 (1/255, -128) model sees exactly v/255 for grey v."""
    p = tflite_model(tmp_path / "t.tflite", [1, 64, 64, 3], "int8", (1 / 255, -128),
                     outputs={"m": (np.zeros([1], np.float32), "float32", None)}, gain=1.0)
    r = open_runner(p)
    x = to_input(np.full((64, 64, 3), V, np.uint8), r.input)
    assert (x == V - 128).all()
    assert float(r.run(x)["m"][0]) == pytest.approx(V / 255, abs=1e-6)


# --------------------------------------------------------------------------------------- bad inputs
def _assert_one_line(e, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_model(tmp_path):
    with pytest.raises(InputError) as e:
        open_runner(tmp_path / "nope.onnx")
    assert "not found" in _assert_one_line(e, tmp_path / "nope.onnx")


def test_directory_as_model(tmp_path):
    with pytest.raises(InputError) as e:
        open_runner(tmp_path)
    _assert_one_line(e, tmp_path)


@pytest.mark.parametrize("name", ["g.onnx", "g.tflite", "g.bin"])
def test_garbage_bytes(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x00garbage\xff" * 50)
    with pytest.raises(InputError) as e:
        open_runner(p)
    _assert_one_line(e, p)


def test_empty_tflite(tmp_path):
    p = tmp_path / "e.tflite"
    p.write_bytes(b"")
    with pytest.raises(InputError) as e:
        open_runner(p)
    _assert_one_line(e, p)


def test_truncated_tflite(tmp_path):
    good = tflite_model(tmp_path / "g.tflite", [1, 64, 64, 3], outputs={"out": (CONST, "float32", None)})
    p = tmp_path / "t.tflite"
    p.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError) as e:
        open_runner(p)
    _assert_one_line(e, p)


def test_onnx_non_image_input(tmp_path):
    p = onnx_model(tmp_path / "v.onnx", [1, 10], outputs={"out": CONST})
    with pytest.raises(InputError) as e:
        open_runner(p)
    assert "not an image tensor" in _assert_one_line(e, p)


def test_onnx_four_dims_but_no_channel_axis(tmp_path):
    p = onnx_model(tmp_path / "v.onnx", [1, 5, 64, 64], outputs={"out": CONST})
    with pytest.raises(InputError) as e:
        open_runner(p)
    _assert_one_line(e, p)


def test_tflite_non_image_input(tmp_path):
    p = tflite_model(tmp_path / "v.tflite", [1, 10], outputs={"out": (CONST, "float32", None)})
    with pytest.raises(InputError) as e:
        open_runner(p)
    assert "not an image tensor" in _assert_one_line(e, p)


def test_onnx_int32_input_is_rejected(tmp_path):
    p = onnx_model(tmp_path / "i.onnx", [1, 3, 64, 64], "int32", outputs={"out": CONST})
    with pytest.raises(InputError) as e:
        open_runner(p)
    _assert_one_line(e, p)


def test_metadata_json_written_by_tiny_model_is_plain(tmp_path):
    """The appended archive holds exactly what was given (guards the builder other tests rely on)."""
    md = {"names": {"0": "a"}}
    p = tflite_model(tmp_path / "m.tflite", [1, 8, 8, 3], outputs={"out": (CONST, "float32", None)},
                     zip_metadata=md)
    with zipfile.ZipFile(p) as z:
        assert json.loads(z.read("metadata.json")) == md


def test_tiny_tflite_builder_raw_interpreter(tmp_path):
    """The builder itself, without our runner: the op chain is as documented and the raw int8 output is the
    reference quantization of constant + gain * mean(dequantized input)."""
    from ai_edge_litert.interpreter import Interpreter

    p = tflite_model(tmp_path / "raw.tflite", [1, 4, 4, 3], "uint8", (1 / 255, 0),
                     outputs={"a": (CONST, "int8", (0.5, -10))}, gain=10.0)
    it = Interpreter(model_path=str(p))
    it.allocate_tensors()
    ops = [d["op_name"] for d in it._get_ops_details()]
    assert ops[:5] == ["DEQUANTIZE", "MEAN", "MUL", "ADD", "QUANTIZE"]  # then a DELEGATE node (XNNPACK)
    it.set_tensor(it.get_input_details()[0]["index"], np.full((1, 4, 4, 3), 51, np.uint8))
    it.invoke()
    raw = it.get_tensor(it.get_output_details()[0]["index"])
    assert raw.dtype == np.int8
    # mean = 51/255 = 0.2, * 10 = 2.0: every value moves by 2.0 = 4 steps of 0.5
    np.testing.assert_array_equal(raw, quantize(CONST + 2.0, 0.5, -10, "int8"))
