"""Layer-wise error and layer sensitivity of a TFLite INT8 model against its float TFLite parent.

Layer-wise error: every intermediate tensor of the INT8 model, dequantized, against the float parent's
tensor of the same name, on a few images. The comparison is ai-edge-quantizer's own
``model_validator.compare_model`` (it runs both interpreters with every tensor preserved and matches by
name); we ask it for the mean squared error and the mean signal power per tensor and report
SQNR = 10 log10(power / MSE), ordered by the depth of the op that makes the tensor.

Sensitivity: for each of the worst layers, the INT8 model is rebuilt from the float parent with that one
op kept in float (ai-edge-quantizer's ``no_quantize`` rule for the op's scope) or with int16 activations,
and every other tensor keeps the very range it has in the INT8 model (read back from its scale and zero
point: no calibration data needed), then scored with the detection metric. ``layer_sensitivity`` is the
function the quantizer's accuracy recovery calls with its own scorer.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PRECISIONS = ("float", "int16")


def _power(target, reference) -> float:
    return float(np.mean(np.square(np.asarray(reference, np.float64))))


def _mse(target, reference) -> float:
    d = np.asarray(target, np.float64) - np.asarray(reference, np.float64)
    return float(np.mean(np.square(d)))


def tensor_depths(model: bytes) -> dict[str, dict]:
    """{tensor name: {depth (index of the op that makes it), op, inputs, scope, consumers}}: ``scope`` is
    ai-edge-quantizer's name of the making op (its output names joined by ';'), ``consumers`` the scopes of
    the ops that read the tensor."""
    from validator.runners.tflite import interpreter_class, quiet_stderr

    with quiet_stderr():
        it = interpreter_class()(model_content=bytes(model))
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    ops = it._get_ops_details()  # noqa: SLF001
    readers: dict[str, list[str]] = {}
    scopes = []
    for op in ops:
        scope = ";".join(names[int(o)] for o in op["outputs"]) + ";"
        scopes.append(scope)
        for i in op["inputs"]:
            if int(i) >= 0:
                readers.setdefault(names[int(i)], []).append(scope)
    out = {}
    for k, op in enumerate(ops):
        ins = [names[int(i)] for i in op["inputs"] if int(i) >= 0]
        for o in op["outputs"]:
            n = names[int(o)]
            out.setdefault(n, {"depth": k, "op": op["op_name"], "inputs": ins, "scope": scopes[k],
                               "consumers": readers.get(n, [])})
    return out


def layer_errors(parent: bytes, model: bytes, samples: Sequence[np.ndarray]) -> list[dict]:
    """``[{tensor, depth, op, sqnr_db, mse}]`` for every tensor both models hold, in graph order.
    ``samples``: float inputs for the parent's (and the model's) single image input."""
    from ai_edge_quantizer import model_validator
    from ai_edge_quantizer.utils import validation_utils as vu

    from quantizer.emit_tflite import signature, strip_appended
    from validator.runners.tflite import quiet_stderr

    parent, model = strip_appended(parent), strip_appended(model)
    key, name, _ = signature(parent)
    metrics = [vu.ValidationErrorMetric.MSE, vu.ValidationErrorMetric.SNR]
    with quiet_stderr():
        res = model_validator.compare_model(parent, model, {key: [{name: x} for x in samples]},
                                            error_metrics=metrics, compare_fns=[_mse, _power], num_threads=1)
    r = res.get_signature_comparison_result(key)
    depth = tensor_depths(parent)
    rows = []
    for group in (r.intermediate_tensors, r.output_tensors):
        for tensor, m in group.items():
            if tensor not in depth:
                continue
            mse, power = m["mse"], m["snr"]
            if power <= 0:
                continue
            sqnr = math.inf if mse == 0 else 10 * math.log10(power / mse)
            d = depth[tensor]
            rows.append({"tensor": tensor, "depth": d["depth"], "op": d["op"],
                         "sqnr_db": None if not math.isfinite(sqnr) else round(sqnr, 2), "mse": mse,
                         "inputs": d["inputs"], "scope": d["scope"], "consumers": d["consumers"]})
    return _drops(rows)


def _drops(rows: list[dict]) -> list[dict]:
    by_name = {r["tensor"]: r for r in rows}
    for r in rows:  # the error this op adds: its output's SQNR below its worst activation input's
        ins = [by_name[i]["sqnr_db"] for i in r.pop("inputs") if i in by_name and by_name[i]["sqnr_db"] is not None]
        # (inputs cleaner than 60 dB count as 60: the image input is exact to ~150 dB and would rank first)
        r["drop_db"] = None if r["sqnr_db"] is None else round(min(min(ins, default=60.0), 60.0) - r["sqnr_db"], 2)
    rows.sort(key=lambda x: x["depth"])
    return rows


def onnx_layer_errors(parent: Path, model: Path, samples: Sequence[np.ndarray]) -> list[dict]:
    """:func:`layer_errors` for an ONNX QDQ model and its float ONNX parent, through onnxruntime's own
    ``qdq_loss_debug`` (every activation saved, each QDQ tensor matched to the float one by name, SQNR of the
    dequantized activation against the float one: its ``xmodel_err``). Depth: the producing node's index in
    the float graph."""
    import tempfile

    import onnx
    from onnxruntime.quantization import qdq_loss_debug as qdl
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    g = onnx.load(str(parent), load_external_data=False).graph
    name = g.input[0].name
    producer = {o: (k, n) for k, n in enumerate(g.node) for o in n.output}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x} for x in samples])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory(prefix="qharness-qdq-") as d:
        fa, qa = Path(d) / "float.onnx", Path(d) / "qdq.onnx"
        qdl.modify_model_output_intermediate_tensors(parent, fa)
        qdl.modify_model_output_intermediate_tensors(model, qa)
        errors = qdl.compute_activation_error(qdl.create_activation_matching(
            qdl.collect_activations(str(qa), Reader()), qdl.collect_activations(str(fa), Reader())))
    rows = []
    for tensor, e in errors.items():
        if tensor not in producer or e.get("xmodel_err") is None:
            continue
        k, node = producer[tensor]
        sq = float(e["xmodel_err"])
        rows.append({"tensor": tensor, "depth": k, "op": node.op_type,
                     "sqnr_db": round(sq, 2) if math.isfinite(sq) else None, "inputs": list(node.input),
                     "scope": node.name, "consumers": []})
    return _drops(rows)


def worst(rows: Sequence[dict], n: int) -> list[dict]:
    """The ``n`` ops that add the most error (SQNR drop from their inputs to their output; SQNR itself falls
    with depth, so the lowest-SQNR tensors would all be the last ones), one per op."""
    ranked = sorted((r for r in rows if r["drop_db"] is not None), key=lambda r: (-r["drop_db"], r["depth"]))
    seen, out = set(), []
    for r in ranked:
        if r["depth"] not in seen:
            seen.add(r["depth"])
            out.append(r)
        if len(out) == n:
            break
    return out


# ----------------------------------------------------------------------------------------- sensitivity
def ranges_of(model: bytes, names) -> dict[str, tuple[float, float]]:
    """{tensor: (min, max)} a quantized model's tensors stand for (the ends of their integer ranges)."""
    from quantizer.emit_tflite import tensor_quantization

    q = tensor_quantization(model)
    out = {}
    for n in names:
        t = q.get(n)
        if not t or not t["scales"]:  # an op left in float reads the tensor's quantized twin
            t = q.get(f"{n}_quantized") or t
        if not t or len(t["scales"]) != 1 or t["dtype"] not in ("int8", "uint8", "int16"):
            continue
        info = np.iinfo(np.dtype(t["dtype"]))
        s, zp = t["scales"][0], t["zero_points"][0]
        out[n] = ((int(info.min) - zp) * s, (int(info.max) - zp) * s)
    return out


def keep_rules(layer: dict, precision: str, base_rule: dict | None) -> list[dict]:
    """Recipe rules that keep ``layer`` (a row of :func:`layer_errors`) in higher precision: the op that makes
    the tensor and the ops that read it, so the tensor itself is never int8 (keeping the op alone would
    re-quantize its output to the very same int8 range for the next op). ``float``: no_quantize; ``int16``:
    16-bit activations with int8 weights (16x8)."""
    rules = []
    for scope in [layer["scope"], *layer.get("consumers", [])]:
        regex = "^" + re.escape(scope) + "$"
        if precision == "float":
            rules.append({"regex": regex, "operation": "*", "algorithm_key": "no_quantize"})
        else:
            if base_rule is None:
                raise ValueError("int16 needs the recipe's int8 rule to derive the 16x8 rule from")
            rule = copy.deepcopy(base_rule)
            rule["regex"] = regex
            rule["op_config"]["activation_tensor_config"].update(num_bits=16, symmetric=True)
            rules.append(rule)
    return rules


def rebuild(parent: bytes, model: bytes, recipe: list[dict], extra_rules: Sequence[dict],
            input_range: tuple[float, float] | None) -> bytes:
    """The INT8 model re-made from its parent with ``extra_rules`` appended (later rules win in
    ai-edge-quantizer), every tensor at the range it has in ``model``."""
    from quantizer.emit_tflite import qsv_template, quantize_static, strip_appended

    ranges = ranges_of(model, qsv_template(strip_appended(parent), list(recipe)))
    # a tensor the new rules need and the INT8 model has no range for is quantize_static's ValueError
    return quantize_static(parent, ranges, list(recipe) + list(extra_rules), input_range)


def layer_sensitivity(parent: bytes, model: bytes, recipe: list[dict], candidates: Sequence[dict],
                      score: Callable[[bytes], float], *, precision: str = "float",
                      input_range: tuple[float, float] | None = None,
                      progress: Callable[[], None] = lambda: None) -> dict:
    """Score of the INT8 model rebuilt as it is (``baseline``) and with each candidate layer (a row of
    :func:`layer_errors`) alone kept in ``precision``; ``rows`` ranked by the win, best first."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    base_rule = next((r for r in reversed(recipe) if r.get("algorithm_key") != "no_quantize"), None)
    baseline = score(rebuild(parent, model, recipe, (), input_range))
    progress()
    rows = []
    for c in candidates:
        try:
            rules = keep_rules(c, precision, base_rule)
            value = score(rebuild(parent, model, recipe, rules, input_range))
            rows.append({**{k: c.get(k) for k in ("tensor", "depth", "op", "sqnr_db", "drop_db")},
                         "precision": precision, "score": value, "win": value - baseline, "rules": rules})
        except Exception as e:  # noqa: BLE001  one layer that ai-edge-quantizer cannot re-make is reported
            rows.append({**{k: c.get(k) for k in ("tensor", "depth", "op", "sqnr_db", "drop_db")},
                         "precision": precision, "score": None, "win": None, "error": " ".join(str(e).split())[:160]})
        progress()
    rows.sort(key=lambda r: (-(r["win"] if r["win"] is not None else -math.inf), r["depth"]))
    return {"baseline": baseline, "precision": precision, "rows": rows}
