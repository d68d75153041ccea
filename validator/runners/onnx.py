"""ONNX models through onnxruntime's CPU provider (thread count settable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validator.decode.contract import TensorSpec
from validator.errors import InputError
from validator.runners.base import image_input, normalize_metadata

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


class OnnxRunner:
    kind = "onnx"
    quantized = False  # an ONNX model given with --model is taken as the float reference

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
