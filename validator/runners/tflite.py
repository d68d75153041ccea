"""TFLite models through the LiteRT interpreter (ai_edge_litert), falling back to tflite_runtime.

Quantized tensors are handled with the model's own parameters: inputs arrive already quantized
(see data/preprocess.to_input), outputs are dequantized here as (q - zero_point) * scale.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from validator.decode.contract import TensorSpec
from validator.errors import InputError
from validator.runners.base import image_input, zip_metadata


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise InputError("no TFLite runtime installed: pip install ai-edge-litert "
                             "(or tflite-runtime)") from None
    return Interpreter


@contextlib.contextmanager
def _quiet_stderr():
    """LiteRT's C++ side prints 'INFO: Created TensorFlow Lite XNNPACK delegate' on fd 2; keep the
    command's stderr for our own one-line messages."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class TFLiteRunner:
    kind = "tflite"

    def __init__(self, path: Path, threads: int | None = None):
        self.path = Path(path)
        Interpreter = interpreter_class()
        try:
            with _quiet_stderr():
                self.interp = Interpreter(model_path=str(path), num_threads=threads or None)
        except (ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: cannot load TFLite model ({msg[:200]})") from None
        self.metadata = zip_metadata(self.path) or {"names": None, "imgsz": None, "task": None,
                                                    "stride": None, "source": None}
        ins = self.interp.get_input_details()
        if len(ins) != 1:
            raise InputError(f"{path}: model has {len(ins)} inputs; expected one image input")
        d = ins[0]
        shape = [int(v) for v in d.get("shape_signature", d["shape"])]
        scale, zp = d["quantization"]
        self.input = image_input(self.path, d["name"], shape, np.dtype(d["dtype"]).name, scale, zp,
                                 imgsz=self.metadata.get("imgsz"))
        if list(d["shape"]) != list(self.input.shape):
            self.interp.resize_tensor_input(d["index"], list(self.input.shape))
        try:
            with _quiet_stderr():
                self.interp.allocate_tensors()
        except RuntimeError as e:
            raise InputError(f"{path}: cannot allocate TFLite tensors ({str(e).splitlines()[0][:200]})") from None
        self.quantized = any(t["dtype"] in (np.int8, np.uint8) for t in self.interp.get_tensor_details())
        self._in_index = d["index"]
        self._outs = []
        self.outputs = []
        for o in self.interp.get_output_details():
            s, z = o["quantization"]
            self.outputs.append(TensorSpec(o["name"], tuple(int(v) for v in o["shape"]),
                                           np.dtype(o["dtype"]).name, float(s), int(z)))
            self._outs.append((o["name"], o["index"], float(s), int(z)))

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.interp.set_tensor(self._in_index, x)
        self.interp.invoke()
        out = {}
        for name, idx, scale, zp in self._outs:
            t = self.interp.get_tensor(idx)
            if t.dtype != np.float32 and scale > 0:
                t = (t.astype(np.float32) - zp) * np.float32(scale)
            out[name] = np.array(t, dtype=np.float32, copy=True)
        return out
