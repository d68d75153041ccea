"""ONNX models through onnxruntime's CPU provider (thread count settable).

Precision is read from the graph itself (the ``onnx`` package, nodes and initializers only; external
weights are not loaded): QuantizeLinear/DequantizeLinear pairs make a QDQ model, QLinear* operators a
QOperator one, ConvInteger/MatMulInteger a dynamic-range one, float16 initializers a float16 one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validator.errors import InputError
from validator.runners.base import image_input, normalize_metadata
from validator.tensors import Precision, TensorSpec

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


_DYNAMIC_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def onnx_precision(path: Path) -> Precision:
    """What the graph's nodes and initializers show (see the module docstring)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError  # noqa: BLE001
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(f"{path}: cannot read the ONNX graph ({msg})") from None
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    qlinear = sum(v for k, v in ops.items() if k.startswith("QLinear"))
    qdq = ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0)
    if qlinear:
        return Precision("INT8 (QOperator)", True, f"{qlinear} QLinear* operators")
    if qdq:
        dq_types = set()
        inits = {t.name: t.data_type for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "DequantizeLinear" and n.input and n.input[0] in inits:
                dq_types.add(inits[n.input[0]])
        bits = "INT16" if dq_types and dq_types <= {4, 5} else "INT8"  # UINT16 / INT16 weights
        return Precision(f"{bits} (QDQ)", True, f"{ops.get('QuantizeLinear', 0)} QuantizeLinear and "
                                                f"{ops.get('DequantizeLinear', 0)} DequantizeLinear nodes")
    dyn = sum(ops.get(k, 0) for k in _DYNAMIC_OPS)
    if dyn:
        return Precision("INT8 dynamic-range", True, f"{dyn} ConvInteger/MatMulInteger/DynamicQuantizeLinear nodes")
    f16 = sum(1 for t in model.graph.initializer if t.data_type == 10)
    if f16:
        return Precision("float16", False, f"{f16} float16 initializers")
    return Precision("float32", False, "no quantization nodes, float initializers")


class OnnxRunner:
    kind = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: cannot load ONNX model ({msg[:200]})") from None
        self.precision = onnx_precision(self.path)
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        self.metadata = normalize_metadata(dict(meta), "onnx custom_metadata_map")
        ins = self.session.get_inputs()
        if len(ins) != 1:
            raise InputError(f"{path}: model has {len(ins)} inputs; expected one image input")
        i = ins[0]
        self.input = image_input(self.path, i.name, list(i.shape), _ORT_DTYPES.get(i.type, i.type),
                                 imgsz=self.metadata.get("imgsz"))
        self.outputs = [
            TensorSpec(o.name, tuple(d if isinstance(d, int) else -1 for d in o.shape),
                       _ORT_DTYPES.get(o.type, o.type))
            for o in self.session.get_outputs()
        ]
        self._names = [o.name for o in self.outputs]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self._names, {self.input.name: x})
        return {n: np.asarray(r, dtype=np.float32) for n, r in zip(self._names, res, strict=True)}
