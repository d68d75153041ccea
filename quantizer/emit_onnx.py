"""ONNX QDQ variants: onnxruntime's ``quantize_static`` with our ranges as per-tensor overrides.

onnxruntime's own calibrators keep every intermediate output of every sample until the reader is exhausted
(a YOLOv8n at 200 samples would need ~14 GB), so they are not used for ranges: every activation tensor gets
``TensorQuantOverrides`` ``{"rmin", "rmax"}`` from our statistics and the data reader yields one zero
input (its min-max pass then decides nothing). Weights are int8, symmetric, per channel or per tensor
(``--granularity``); activations int8 asymmetric (``QInt8``). The model keeps float input and outputs
(QuantizeLinear after the input, DequantizeLinear before the outputs), as QDQ models do; the input's
range is pinned to the input convention's (0..1: scale 1/255, zero point -128), as for TFLite.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _quiet():
    """quantize_static logs "please consider pre-processing" warnings and prints progress: not ours to show."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_static(float_model, ranges: Mapping[str, tuple[float, float]], granularity: str,
                    input_range: tuple[float, float] | None = None) -> bytes:
    """QDQ INT8 model (bytes) of ``float_model`` (ModelProto or path) with our ``ranges``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    model = onnx.load(str(float_model)) if isinstance(float_model, (str, Path)) else float_model
    inp = model.graph.input[0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    overrides = {k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in ranges.items()}
    if input_range is not None:
        overrides[inp.name] = [{"rmin": np.float32(input_range[0]), "rmax": np.float32(input_range[1])}]

    class OneZero(CalibrationDataReader):
        def __init__(self):
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return {inp.name: np.zeros(shape, np.float32)}

    with tempfile.TemporaryDirectory(prefix="qharness-qdq-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(model, str(src))
        with _quiet():
            ort_quantize_static(str(src), str(dst), OneZero(), quant_format=QuantFormat.QDQ,
                                per_channel=granularity == "channel", activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8,
                                extra_options={"TensorQuantOverrides": overrides, "ActivationSymmetric": False,
                                               "WeightSymmetric": True})
        return dst.read_bytes()


def qdq_scales(data: bytes) -> dict[str, tuple[float, int]]:
    """Scale and zero point of every QuantizeLinear's input tensor (the activations), read back."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(data)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in inits:
            s = inits[n.input[1]]
            z = inits[n.input[2]] if len(n.input) > 2 and n.input[2] in inits else np.array(0)
            out[n.input[0]] = (float(np.ravel(s)[0]), int(np.ravel(z)[0]))
    return out
