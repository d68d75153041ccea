"""What the quantized graph holds: an op audit (what an NPU would run on the CPU) and the output-scale lint.

Op audit: NPUs run integer ops; a float op in an INT8 graph, a DEQUANTIZE/QUANTIZE pair inside it, or an
int16 op falls back to the CPU (or is refused) on most of them. Counted by type and named.

Output-scale lint: the int8 tensor behind each output has one scale and zero point. How many of its 256
levels land in the score range [0, 1], and how many pixels one box step is, decide what a detector can
resolve: Ultralytics' INT8 export puts boxes and scores in one tensor, so the box range sets the scale and
the scores get what is left. A warning when scores get fewer than 64 levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_SCORE_LEVELS = 64


@dataclass(frozen=True)
class Quant:
    dtype: str
    scale: float
    zero_point: int

    @property
    def qrange(self) -> tuple[int, int]:
        info = np.iinfo(np.dtype(self.dtype))
        return int(info.min), int(info.max)

    def levels_in(self, lo: float, hi: float) -> int:
        """Distinct representable values in [lo, hi]."""
        qmin, qmax = self.qrange
        a = max(qmin, int(np.ceil(lo / self.scale + self.zero_point - 1e-9)))
        b = min(qmax, int(np.floor(hi / self.scale + self.zero_point + 1e-9)))
        return max(0, b - a + 1)


# ---------------------------------------------------------------------------------------------- TFLite
def _tflite(path: Path):
    from validator.runners.tflite import interpreter_class, quiet_stderr

    with quiet_stderr():
        it = interpreter_class()(model_path=str(path))
    return it


def _tflite_graph(path: Path):
    it = _tflite(path)
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops = it._get_ops_details()  # noqa: SLF001  the only public-enough view of the op list
    inputs = {d["index"] for d in it.get_input_details()}
    outputs = {d["index"]: d["name"] for d in it.get_output_details()}
    return it, tensors, ops, inputs, outputs


def _dtype(t: dict) -> str:
    return np.dtype(t["dtype"]).name


def _quant(t: dict) -> Quant | None:
    qp = t.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if scales is None or len(scales) != 1:
        return None
    return Quant(_dtype(t), float(scales[0]), int(qp["zero_points"][0]))


def op_precisions(path: Path) -> list[dict]:
    """Every op of a TFLite model in execution order: ``{index, op, precision, tensor}`` with precision
    ``int8`` (integer kernels), ``int16`` (16-bit activations, int8 weights: 16x8), ``float`` (runs in float:
    on an NPU, on the CPU) or ``quantize`` / ``dequantize`` (``internal`` when inside the graph, not at its
    edges or on constants). What a manifest lists and :func:`op_audit` counts."""
    _, tensors, ops, inputs, outputs = _tflite_graph(path)
    produced = {int(o) for op in ops for o in op["outputs"]}

    def const(i: int) -> bool:
        return i >= 0 and i not in produced and i not in inputs

    rows = []
    for k, op in enumerate(ops):
        kind = op["op_name"]
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        outs = [int(o) for o in op["outputs"]]
        row = {"index": k, "op": kind, "tensor": tensors[outs[0]]["name"] if outs else None}
        if kind == "QUANTIZE":
            internal = any(_dtype(tensors[i]) == "float32" and i not in inputs for i in ins)
            row["precision"] = "quantize" + (" (internal)" if internal else "")
        elif kind == "DEQUANTIZE":
            internal = not all(const(i) for i in ins) and not all(o in outputs for o in outs)
            row["precision"] = "dequantize" + (" (internal)" if internal else "")
        else:
            dtypes = {_dtype(tensors[i]) for i in ins if not const(i)} | {_dtype(tensors[o]) for o in outs}
            row["precision"] = ("float" if "float32" in dtypes or "float16" in dtypes
                                else "int16" if "int16" in dtypes else "int8")
        rows.append(row)
    return rows


def op_audit(path: Path) -> dict:
    """{ops, int8, int16, float, float_ops: {type: n}, float_op_names: [...], int16_ops: {type: n},
    internal_quantize, internal_dequantize, fully_integer}: of a TFLite model, or an ONNX one (QDQ)."""
    if Path(path).suffix.lower() == ".onnx":
        return _onnx_audit(Path(path))
    counts = {"int8": 0, "int16": 0, "float": 0}
    float_ops: dict[str, int] = {}
    int16_ops: dict[str, int] = {}
    names: list[str] = []
    internal_q = internal_dq = 0
    for row in op_precisions(path):
        kind, prec = row["op"], row["precision"]
        if prec.startswith("quantize") or prec.startswith("dequantize"):
            internal_q += prec == "quantize (internal)"
            internal_dq += prec == "dequantize (internal)"
            continue
        counts[prec] += 1
        if prec == "float":
            float_ops[kind] = float_ops.get(kind, 0) + 1
            if len(names) < 40:
                names.append(f"{kind} {row['tensor']}" if row["tensor"] else kind)
        elif prec == "int16":
            int16_ops[kind] = int16_ops.get(kind, 0) + 1
    return {"format": "tflite", "ops": sum(counts.values()), **counts, "float_ops": float_ops,
            "float_op_names": names, "int16_ops": int16_ops, "internal_quantize": internal_q,
            "internal_dequantize": internal_dq,
            "fully_integer": counts["float"] == 0 and counts["int16"] == 0 and internal_q == internal_dq == 0}


def _onnx_audit(path: Path) -> dict:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    graph_in = {i.name for i in g.input}
    counts = {"int8": 0, "int16": 0, "float": 0}
    float_ops: dict[str, int] = {}
    names: list[str] = []
    q = dq = 0
    shape_ops = {"Shape", "Constant", "Reshape", "Concat", "Gather", "Unsqueeze", "Squeeze", "Slice", "Transpose",
                 "Split"}
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            q += 1
            continue
        if n.op_type == "DequantizeLinear":
            dq += 1
            continue
        if n.op_type.startswith("QLinear") or n.op_type in ("ConvInteger", "MatMulInteger"):
            counts["int8"] += 1
            continue
        data_in = [i for i in n.input if i and i not in inits]
        fed = all((producer.get(i) is not None and producer[i].op_type == "DequantizeLinear") for i in data_in)
        if data_in and fed or (n.op_type in shape_ops and all(i in inits or i not in graph_in for i in data_in)):
            counts["int8"] += 1
        else:
            counts["float"] += 1
            float_ops[n.op_type] = float_ops.get(n.op_type, 0) + 1
            if len(names) < 40:
                names.append(f"{n.op_type} {n.name or n.output[0]}")
    return {"format": "onnx", "ops": sum(counts.values()), **counts, "float_ops": float_ops,
            "float_op_names": names, "int16_ops": {}, "quantize_linear": q, "dequantize_linear": dq,
            "internal_quantize": 0, "internal_dequantize": 0,
            "fully_integer": counts["float"] == 0 and (q + dq) > 0}


def output_quantization(path: Path) -> dict[str, Quant | None]:
    """{output name: the quantization of the integer tensor behind it} (the output itself when it is
    integer; the input of the DEQUANTIZE that makes a float output; None when the output is float-made)."""
    if Path(path).suffix.lower() == ".onnx":
        return _onnx_output_quant(Path(path))
    _, tensors, ops, _, outputs = _tflite_graph(path)
    maker = {int(o): op for op in ops for o in op["outputs"]}
    out = {}
    for idx, name in outputs.items():
        t = tensors[idx]
        if _dtype(t) != "float32":
            out[name] = _quant(t)
            continue
        op = maker.get(idx)
        out[name] = _quant(tensors[int(op["inputs"][0])]) if op is not None and op["op_name"] == "DEQUANTIZE" else None
    return out


def _onnx_output_quant(path: Path) -> dict[str, Quant | None]:
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for o in g.output:
        n = producer.get(o.name)
        if n is None or n.op_type != "DequantizeLinear" or n.input[1] not in inits:
            out[o.name] = None
            continue
        scale = inits[n.input[1]].reshape(-1)
        zp = inits.get(n.input[2]) if len(n.input) > 2 else None
        if scale.size != 1:
            out[o.name] = None
            continue
        dtype = zp.dtype.name if zp is not None else "uint8"
        out[o.name] = Quant(dtype, float(scale[0]), int(zp.reshape(-1)[0]) if zp is not None else 0)
    return out


def _levels(n: int | None, what: str = "") -> str:
    return f"{n} {what}level{'' if n == 1 else 's'}"


def scale_lint(src, box_range_px: tuple[float, float] | None) -> dict:
    """For each output of ``src`` (a Source): its scale, zero point, the roles it holds, the score levels in
    [0, 1] and the box step in pixels; ``findings`` are the lines worth saying (``level`` warn / info)."""
    quants = output_quantization(src.path)
    roles_of: dict[str, list[str]] = {}
    c = src.contract
    for role, name in c.roles.items():
        held = ["boxes", "scores"] + (["coefs"] if c.num_masks else []) if role == "preds" else [role]
        roles_of.setdefault(name, []).extend(held)
    hw = src.runner.input.hw
    px_per_unit = float(max(hw)) if src.box_units == "normalized" else 1.0
    rows, findings = [], []
    for name, q in quants.items():
        held = roles_of.get(name, [])
        row = {"output": name, "roles": held, "dtype": q.dtype if q else "float32",
               "scale": q.scale if q else None, "zero_point": q.zero_point if q else None}
        if q is not None:
            if "scores" in held:
                row["score_levels"] = q.levels_in(0.0, 1.0)
                if row["score_levels"] < MIN_SCORE_LEVELS:
                    findings.append({"level": "warn", "output": name, "text": (
                        f"{src.name}: output {name} gives class scores {_levels(row['score_levels'])} in [0, 1] "
                        f"(< {MIN_SCORE_LEVELS}; scale {q.scale:.4g}, zero point {q.zero_point})"
                        + (": boxes and scores share one int8 scale" if "boxes" in held else ""))})
            if "boxes" in held:
                row["box_step_px"] = round(q.scale * px_per_unit, 4)
                if box_range_px is not None:
                    lo, hi = (v / px_per_unit for v in box_range_px)
                    row["box_levels"] = q.levels_in(lo, hi)
            if "boxes" in held and "scores" not in held:
                findings.append({"level": "info", "output": name, "text": (
                    f"{src.name}: output {name} (boxes) moves a box edge in steps of {row['box_step_px']:g} px "
                    f"(scale {q.scale:.4g}): a floor under localisation at high IoU")})
            if "boxes" in held and "scores" in held:
                levels = row.get("score_levels")
                findings.append({"level": "info", "output": name, "text": (
                    f"{src.name}: output {name} holds boxes and scores under one scale ({q.scale:.4g}): "
                    f"{_levels(levels, 'score ')}, box step {row['box_step_px']:g} px")})
        rows.append(row)
    return {"outputs": rows, "findings": findings}
