"""Empirical bias correction of an INT8 TFLite model: every op stays INT8, each conv's mean error is removed.

Quantizing weights (and the activations feeding a layer) shifts the *mean* of each output channel, and that
shift is systematic: it survives every image and adds up through the graph (Nagel et al. 2019, "Data-free
quantization through weight equalization and bias correction"; AIMET's empirical bias correction). Measured
on calibration images: for each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED output channel ``c``,
``e_c = mean(dequant(y_int8) - y_float)`` over images and positions, with the INT8 model fed its own
quantized activations (so the error of everything before the layer is in ``e_c``, as it will be at run time),
then ``e_c`` is folded into the layer's int32 bias: ``b_c -= round(e_c / bias_scale_c)``. Nothing else
changes: the same scales, zero points, ops and size, so an NPU with no float path runs it unchanged.

Layers are corrected one after the other in execution order, each measured on the model as the corrections
before it left it (a correction upstream changes what downstream layers see; correcting every layer at once
double-counts and diverges); the int32 biases are patched in place in the flatbuffer bytes (the vectors keep
their length).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CORRECTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _interpreter(model: bytes):
    from validator.runners.tflite import interpreter_class, quiet_stderr

    with quiet_stderr():
        it = interpreter_class()(model_content=bytes(model), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    return it


def _run(it, x: np.ndarray) -> None:
    d = it.get_input_details()[0]
    if d["dtype"] in (np.int8, np.uint8, np.int16):
        s, zp = d["quantization"]
        info = np.iinfo(d["dtype"])
        x = np.clip(np.round(x / s) + zp, info.min, info.max).astype(d["dtype"])
    it.set_tensor(d["index"], x.astype(d["dtype"], copy=False))
    it.invoke()


def _deq(it, detail: dict) -> np.ndarray:
    a = it.get_tensor(detail["index"])
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if a.dtype in (np.float32, np.float16) or scales is None or not len(scales):
        return a.astype(np.float64)
    zp = qp["zero_points"]
    return (a.astype(np.float64) - zp[0]) * scales[0]


def _bias_layers(model: bytes) -> list[dict]:
    """The layers a correction applies to: ``{op, out, bias, bias_scales}`` (tensor indices), in order."""
    it = _interpreter(model)
    details = {d["index"]: d for d in it.get_tensor_details()}
    rows = []
    for op in it._get_ops_details():  # noqa: SLF001  the op list; no public API gives inputs per op
        if op["op_name"] not in CORRECTED_OPS or len(op["inputs"]) < 3 or int(op["inputs"][2]) < 0:
            continue
        b = details[int(op["inputs"][2])]
        o = details[int(op["outputs"][0])]
        bq = b.get("quantization_parameters") or {}
        if np.dtype(b["dtype"]) != np.int32 or not len(bq.get("scales", [])) or np.dtype(o["dtype"]) != np.int8:
            continue
        rows.append({"op": op["op_name"], "out": o["name"], "bias": int(op["inputs"][2]),
                     "bias_name": b["name"], "bias_scales": np.asarray(bq["scales"], np.float64)})
    return rows


def _bias_span(model: bytes, tensor: int) -> tuple[int, int]:
    """(start, length) in ``model`` of the int32 data of ``tensor`` (subgraph 0)."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(model, 0)
    t = m.Subgraphs(0).Tensors(tensor)
    buf = m.Buffers(t.Buffer())
    if buf.Offset() > 1:
        return int(buf.Offset()), int(buf.Size())
    o = buf._tab.Offset(4)  # noqa: SLF001  the data vector's field (generated code reads it the same way)
    if not o:
        raise ValueError(f"tensor {tensor}: bias has no data")
    return int(buf._tab.Vector(o)), int(buf.DataLength())  # noqa: SLF001


def _channel_means(it, samples, names: list[str]) -> dict[str, np.ndarray]:
    det = {d["name"]: d for d in it.get_tensor_details()}
    sums: dict[str, np.ndarray] = {}
    for x in samples:
        _run(it, x)
        for n in names:
            if n in det:
                a = _deq(it, det[n])
                m = a.reshape(-1, a.shape[-1]).mean(axis=0)
                sums[n] = m if n not in sums else sums[n] + m
    return {n: v / max(len(samples), 1) for n, v in sums.items()}


def correct(parent: bytes, model: bytes, samples: Sequence[np.ndarray],
            progress=lambda: None) -> tuple[bytes, dict]:
    """``model`` with every conv's per-channel mean error folded into its int32 bias, layer after layer in
    execution order (each measured on the model as the corrections before it left it: a correction upstream
    changes what every later layer sees, so correcting all at once double-counts and diverges), and a report
    ``{layers, corrected, mean_abs_channel_error: {before, after}}``. ``progress()`` after each layer."""
    out = bytearray(model)
    layers = _bias_layers(model)
    names = [lay["out"] for lay in layers]
    ref = _channel_means(_interpreter(parent), samples, names)  # float activations do not change: once
    before = _channel_means(_interpreter(model), samples, names)
    corrected = 0
    for lay in layers:
        progress()
        if lay["out"] not in ref:
            continue
        got = _channel_means(_interpreter(bytes(out)), samples, [lay["out"]])[lay["out"]]
        e = got - ref[lay["out"]]
        scales = lay["bias_scales"]
        if scales.shape[0] not in (1, e.shape[0]):
            continue
        step = np.round(e / scales).astype(np.int64)
        if not step.any():
            continue
        start, length = _bias_span(bytes(out), lay["bias"])
        b = np.frombuffer(bytes(out[start:start + length]), dtype="<i4").astype(np.int64)
        if b.shape != step.shape:
            continue
        out[start:start + length] = np.clip(b - step, -2 ** 31, 2 ** 31 - 1).astype("<i4").tobytes()
        corrected += 1
    after = _channel_means(_interpreter(bytes(out)), samples, names)

    def mae(got: dict) -> float | None:
        v = [float(np.abs(got[n] - ref[n]).mean()) for n in names if n in got and n in ref]
        return round(float(np.mean(v)), 6) if v else None

    return bytes(out), {"layers": len(layers), "corrected": corrected, "samples": len(samples),
                        "mean_abs_channel_error": {"before": mae(before), "after": mae(after)}}
