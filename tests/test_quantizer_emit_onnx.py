"""quantizer.emit_onnx: onnxruntime QDQ models whose activation scales are our ranges (read back), with
int8 weights per channel or per tensor, that track the float model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from quantizer import emit_onnx, layout
from quantizer.calibration import OnnxTap, SampleSource, calibration_images, collect
from quantizer.strategies import parse_strategy, ranges
from tests.conftest import MODELS
from validator.data.preprocess import choose_transform
from validator.tensors import InputSpec


@pytest.fixture(scope="module")
def parent_and_stats(shapes_small):
    model = layout.apply(onnx.load(str(MODELS / "shapes-det.onnx")), "split")
    spec = InputSpec("images", (1, 3, 256, 256), "float32", "NCHW", (256, 256))
    src = SampleSource(calibration_images(shapes_small), spec, choose_transform(spec))
    return model, collect(OnnxTap(model), src, [8], bins=1024)[8], src


@pytest.fixture(scope="module")
def qdq(parent_and_stats):
    model, st, _ = parent_and_stats
    rng = ranges(parse_strategy("percentile:99.99"), st.tensors())
    return rng, {g: emit_onnx.quantize_static(model, rng, g, (0.0, 1.0)) for g in ("channel", "tensor")}


def test_written_scales_are_our_ranges(parent_and_stats, qdq):
    model, _, _ = parent_and_stats
    rng, models = qdq
    scales = emit_onnx.qdq_scales(models["channel"])
    # onnxruntime gives Split/Reshape/MaxPool/... outputs their input's quantization: check what it computes
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    checked = [k for k in rng if k in scales and made_by.get(k) in ("Conv", "Sigmoid", "Mul", "Add")]
    assert len(checked) > 150
    for k in checked:
        lo, hi = rng[k]
        s, z = scales[k]
        assert s == pytest.approx((hi - lo) / 255, rel=1e-6), k
        assert z == int(np.clip(np.round(-128 - lo / s), -128, 127)), k
    assert scales["images"] == (pytest.approx(1 / 255), -128)  # the input's range pinned to 0..1


def test_weight_granularity(qdq):
    _, models = qdq
    widest = {}
    for g, data in models.items():
        m = onnx.load_from_string(data)
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        conv_w = [inits[n.input[1]] for n in m.graph.node if n.op_type == "DequantizeLinear"
                  and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8
                  and inits[n.input[0]].ndim == 4]
        assert conv_w
        widest[g] = max(s.size for s in conv_w)
    assert widest == {"channel": 256, "tensor": 1}


def test_qdq_tracks_the_float_model(parent_and_stats, qdq):
    model, _, src = parent_and_stats
    _, models = qdq
    f = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(models["channel"], providers=["CPUExecutionProvider"])
    for _, x in src(8, 11):  # images not used for calibration
        a = dict(zip(["boxes", "scores"], f.run(["boxes", "scores"], {"images": x}), strict=True))
        b = dict(zip(["boxes", "scores"], q.run(["boxes", "scores"], {"images": x}), strict=True))
        for k in a:
            sqnr = 10 * np.log10(np.mean(a[k] ** 2) / np.mean((a[k] - b[k]) ** 2))
            assert sqnr > 10, (k, sqnr)


def test_the_validator_labels_it_qdq(qdq, tmp_path):
    from validator.runners import open_runner

    _, models = qdq
    p = tmp_path / "v.onnx"
    p.write_bytes(models["channel"])
    assert open_runner(p).precision.label == "INT8 (QDQ)"
