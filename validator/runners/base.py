"""What every runner exposes: one image tensor in, dequantized float32 outputs by name; metadata and precision."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from validator.errors import InputError
from validator.tensors import InputSpec, Precision, TensorSpec


class Runner(Protocol):
    path: Path
    kind: str  # "onnx" | "tflite"
    input: InputSpec
    outputs: list[TensorSpec]
    metadata: dict  # see normalize_metadata; TFLite adds "normalization" and "label_file"
    precision: Precision  # what the tensors show (table label, role check)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


def image_input(path: Path, name: str, shape: list, dtype: str, scale: float = 0.0, zp: int = 0,
                imgsz: list | None = None) -> InputSpec:
    """Check that the model input is a 1x3xHxW / 1xHxWx3 image tensor; fill dynamic H, W from metadata."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    desc = f"{name}{list(shape)} {dtype}"
    if len(dims) != 4:
        raise InputError(f"{path}: model input {desc} is not an image tensor (expected 4-D NCHW or NHWC)")
    if dims[1] == 3 and dims[3] != 3:
        layout, hw = "NCHW", (dims[2], dims[3])
    elif dims[3] == 3:
        layout, hw = "NHWC", (dims[1], dims[2])
    else:
        raise InputError(f"{path}: model input {desc} is not an image tensor (no 3-channel axis)")
    if hw[0] is None or hw[1] is None:
        if not imgsz:
            raise InputError(f"{path}: model input {desc} has dynamic height/width and no imgsz metadata")
        hw = (int(imgsz[0]), int(imgsz[-1]))
    if dtype not in ("float32", "float16", "uint8", "int8", "int16"):
        raise InputError(f"{path}: model input {desc} has unsupported dtype {dtype}")
    full = (1, 3, *hw) if layout == "NCHW" else (1, *hw, 3)
    return InputSpec(name, full, dtype, layout, hw, float(scale), int(zp))


def _literal(v: str):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        try:
            return json.loads(v)
        except ValueError:
            return v


def normalize_metadata(raw: dict, source: str) -> dict:
    """Ultralytics-style metadata (names, imgsz, task, stride) -> {'names': [..] | None, ...}."""
    md = {k: _literal(v) if isinstance(v, str) else v for k, v in raw.items()}
    names = md.get("names")
    if isinstance(names, dict):
        try:
            names = [names[k] for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            names = None
    elif not isinstance(names, list):
        names = None
    imgsz = md.get("imgsz")
    if isinstance(imgsz, int):
        imgsz = [imgsz, imgsz]
    return {"names": names, "imgsz": imgsz if isinstance(imgsz, list) else None,
            "task": md.get("task") if isinstance(md.get("task"), str) else None,
            "stride": md.get("stride") if isinstance(md.get("stride"), int) else None,
            "source": source if raw else None, "normalization": None, "label_file": None}
