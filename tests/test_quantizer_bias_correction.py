"""Empirical bias correction: the per-channel mean error of every corrected conv output falls on images it
never saw, and nothing but int32 bias values changes (same ops, tensors, scales, zero points, size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> dict:
    from validator.datasets.shapes import ShapesConfig, generate

    root = tmp_path_factory.mktemp("bc")
    generate(root / "calib", ShapesConfig(images=16, seed=11))
    r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(MODELS / "shapes-det.onnx"), "--calib",
                        str(root / "calib"), "--samples", "8", "--strategy", "minmax", "--outputs", "split",
                        "--check-images", "0", "--out", str(root / "v"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (v,) = json.loads((root / "v" / "variants.json").read_text())["variants"]
    return {"root": root, "model": (root / "v" / v["path"]).read_bytes(),
            "parent": Path(v["parent_model"]["path"])}


def _inputs(parent: Path, folder: Path, start: int, stop: int) -> list[np.ndarray]:
    from quantizer.calibration import SampleSource, calibration_images
    from quantizer.run import transform_of
    from validator.runners import open_runner

    r = open_runner(parent)
    return [x.copy() for _, x in SampleSource(calibration_images(folder), r.input, transform_of(r))(start, stop)]


def _mean_errors(parent: bytes, model: bytes, xs, names) -> dict[str, np.ndarray]:
    """Written here, apart from the module: per channel, mean(dequantized INT8 tensor - float tensor)."""
    from ai_edge_litert.interpreter import Interpreter

    def run(data: bytes):
        it = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        det = {d["name"]: d for d in it.get_tensor_details()}
        inp = it.get_input_details()[0]
        sums = {n: 0.0 for n in names}
        for x in xs:
            if inp["dtype"] == np.int8:
                s, zp = inp["quantization"]
                x = np.clip(np.round(x / s) + zp, -128, 127).astype(np.int8)
            it.set_tensor(inp["index"], x)
            it.invoke()
            for n in names:
                a = it.get_tensor(det[n]["index"]).astype(np.float64)
                q = det[n]["quantization_parameters"]
                if len(q["scales"]):
                    a = (a - q["zero_points"][0]) * q["scales"][0]
                sums[n] = sums[n] + a.reshape(-1, a.shape[-1]).mean(axis=0)
        return {n: v / len(xs) for n, v in sums.items()}

    f, q = run(parent), run(model)
    return {n: q[n] - f[n] for n in names}


def test_mean_error_falls_on_unseen_images_and_only_biases_change(variant):
    from quantizer import bias_correction
    from quantizer.emit_tflite import tensor_quantization
    from validator.diagnose.graph import op_precisions

    parent = variant["parent"].read_bytes()
    calib = variant["root"] / "calib"
    fixed, rep = bias_correction.correct(parent, variant["model"], _inputs(variant["parent"], calib, 0, 8))
    assert rep["corrected"] > 30 and rep["mean_abs_channel_error"]["after"] < rep["mean_abs_channel_error"]["before"]
    assert len(fixed) == len(variant["model"])
    qa, qb = tensor_quantization(variant["model"]), tensor_quantization(fixed)
    assert qa == qb  # every tensor's dtype, scales and zero points as they were
    pa = op_precisions_of(variant["model"], op_precisions)
    assert pa == op_precisions_of(fixed, op_precisions) and all(p["precision"] != "float" for p in pa)
    convs = [n for n, d in qa.items() if d["dtype"] == "int8" and "convolution" in n and ";" in n]
    def mae(model: bytes, xs) -> float:
        return float(np.mean([np.abs(v).mean() for v in _mean_errors(parent, model, xs, convs).values()]))

    seen, held_out = _inputs(variant["parent"], calib, 0, 8), _inputs(variant["parent"], calib, 8, 16)
    assert mae(fixed, seen) < 0.1 * mae(variant["model"], seen)  # what it measured, it removed
    b, a = mae(variant["model"], held_out), mae(fixed, held_out)  # and most of it is systematic: on images
    assert a < 0.75 * b, (a, b)  # it never saw, the error still falls (8 images: ~0.024 -> ~0.015)


def op_precisions_of(model: bytes, fn) -> list[dict]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(model)
        return fn(p)
