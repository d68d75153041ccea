"""TFLite models through the LiteRT interpreter (ai_edge_litert), falling back to tflite_runtime.

Quantized tensors are handled with the model's own parameters: inputs arrive already quantized
(see data/preprocess.InputMaker), outputs are dequantized here as (q - zero_point) * scale.
An external delegate (``--delegate LIB.so[:key=value,...]``, e.g. an NPU's) runs the model on the
target's accelerator; a delegate that cannot be loaded or refuses the model is an input error naming it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from validator.errors import InputError
from validator.runners.base import image_input
from validator.runners.tflite_file import read_tflite_file
from validator.tensors import TensorSpec


def _runtime():
    try:
        import ai_edge_litert.interpreter as rt
    except ImportError:
        try:
            import tflite_runtime.interpreter as rt
        except ImportError:
            raise InputError("no TFLite runtime installed: pip install ai-edge-litert "
                             "(or tflite-runtime)") from None
    return rt


def interpreter_class():
    return _runtime().Interpreter


@dataclass(frozen=True)
class DelegateSpec:
    """``--delegate LIB.so[:key=value,...]``: an external TFLite delegate and its options."""

    library: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> DelegateSpec:
        """``LIB[:key=value,...]``: the library ends at its ``.so``/``.dylib``/``.dll`` name (values may hold
        ``/`` and ``:``); a library without such a suffix ends at the first ``:`` followed by ``key=``."""
        import re

        m = re.match(r"^(.*?\.(?:so(?:\.\d+)*|dylib|dll))(?::(.*))?$", text)
        if m:
            lib, opts = m.group(1), m.group(2) or ""
        else:
            m = re.match(r"^(.*?):([^:=,]+=.*)$", text)
            lib, opts = (m.group(1), m.group(2)) if m else (text, "")
        pairs = []
        for item in filter(None, (o.strip() for o in opts.split(","))):
            k, eq, v = item.partition("=")
            if not eq or not k.strip():
                raise InputError(f"--delegate {text}: option '{item}' is not key=value")
            pairs.append((k.strip(), v.strip()))
        return cls(lib, tuple(pairs))

    def describe(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return self.library + (f":{opts}" if opts else "")

    def load(self):
        """The loaded delegate; InputError naming the library when it is missing or not a TFLite delegate."""
        import ctypes

        try:
            lib = ctypes.CDLL(self.library)
        except OSError as e:
            raise InputError(f"{self.library}: cannot load delegate library ({str(e).splitlines()[0][:200]})") from None
        missing = [f for f in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")
                   if not hasattr(lib, f)]
        if missing:
            raise InputError(f"{self.library}: not a TFLite external delegate (no {', '.join(missing)})")
        try:
            with quiet_stderr():
                return _runtime().load_delegate(self.library, dict(self.options))
        except (ValueError, RuntimeError, OSError, AttributeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{self.library}: delegate failed to start ({msg[:200]})") from None


@contextlib.contextmanager
def quiet_stderr():
    """Silence fd 2: LiteRT's C++ side prints 'INFO: Created TensorFlow Lite XNNPACK delegate' there; keep
    the command's stderr for our own progress and one-line messages (the quantizer uses it too)."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class TFLiteRunner:
    kind = "tflite"

    def __init__(self, path: Path, threads: int | None = None, delegate: DelegateSpec | None = None):
        self.path = Path(path)
        Interpreter = interpreter_class()
        try:
            info = read_tflite_file(self.path)
        except Exception as e:  # not a flatbuffer we can read: let the interpreter say why  # noqa: BLE001
            info = None
            first_error = e
        delegates = [delegate.load()] if delegate else None
        self.delegate = delegate
        try:
            with quiet_stderr():
                self.interp = Interpreter(model_path=str(path), num_threads=threads or None,
                                          experimental_delegates=delegates)
        except (ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            who = f"delegate {delegate.library} refused the model" if delegate else "cannot load TFLite model"
            raise InputError(f"{path}: {who} ({msg[:200]})") from None
        if info is None:
            raise InputError(f"{path}: cannot read the TFLite flatbuffer ({str(first_error)[:200]})")
        self.precision = info.pop("precision")
        self.metadata = info
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
            with quiet_stderr():
                self.interp.allocate_tensors()
        except RuntimeError as e:
            who = f" with delegate {delegate.library}" if delegate else ""
            raise InputError(f"{path}: cannot allocate TFLite tensors{who} ({str(e).splitlines()[0][:200]})") from None
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
