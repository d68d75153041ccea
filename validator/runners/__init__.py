"""Model runners: onnxruntime for ONNX, the LiteRT interpreter for TFLite. Chosen by file type."""

from __future__ import annotations

from pathlib import Path

from validator.errors import InputError
from validator.runners.base import InputSpec, Runner
from validator.runners.tflite import DelegateSpec

__all__ = ["DelegateSpec", "InputSpec", "Runner", "open_runner"]


def open_runner(path: Path, threads: int | None = None, delegate: DelegateSpec | None = None) -> Runner:
    """The runner for this file (by suffix, or the TFLite magic); ``delegate`` applies to TFLite only."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix.lower() == ".onnx":
        from validator.runners.onnx import OnnxRunner

        return OnnxRunner(path, threads)
    if path.suffix.lower() == ".tflite" or head[4:8] == b"TFL3":
        from validator.runners.tflite import TFLiteRunner

        return TFLiteRunner(path, threads, delegate)
    raise InputError(f"{path}: unsupported model type (expected .onnx or .tflite)")
