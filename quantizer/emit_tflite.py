"""TFLite variants: ai-edge-quantizer with our ranges and a JSON recipe; uint8-input patch; reference rows.

* :func:`quantize_static` -- full-integer INT8 (int8 activations, int8 weights per channel or per tensor)
  from a float TFLite. The activation ranges are ours (``strategies``), handed to ai-edge-quantizer as its
  calibration result (QSVs ``{tensor: {"min", "max"}}``); its own calibration is never run on data (its
  "min-max" is a moving average, and a generator given to it is silently exhausted before use). The key set
  and shapes it expects come from one calibration call on a zero input. The model input's range is the
  input convention's full range (0..1 for pixel / 255), so the input quantization is exactly 1/255 and
  zero point -128: raw pixels, bit for bit, once made uint8. Operators with fixed output ranges (LOGISTIC:
  1/256, -128) keep them whatever the strategy says.
* **Recipes** (``quantizer/recipes/*.json``) are ai-edge-quantizer recipes: a list of rules ``{regex,
  operation, algorithm_key, op_config}``; ``op_config.weight_tensor_config.granularity`` is set from
  ``--granularity`` (CHANNELWISE / TENSORWISE) in every rule that has weights; a rule with
  ``"algorithm_key": "no_quantize"`` keeps the matching ops in float.
* :func:`uint8_input` -- the int8 input replaced by a uint8 one (same scale, zero point + 128) feeding a new
  QUANTIZE op (uint8 -> int8, an exact shift by 128) whose output is the old input; subgraph inputs and
  SignatureDef follow. ai-edge-quantizer's recipes offer signed int8 only. Outputs equal the int8-input
  model's bit for bit (tested).
* :func:`reference` -- ``fp16`` (weights float16, compute float32) and ``dynamic`` (weights int8,
  activations quantized at run time): the rows users compare a calibrated variant against.
* :func:`append_metadata` -- Ultralytics-style ``metadata.json`` (names, imgsz, task, stride, layout) in a
  zip appended to the flatbuffer, where the validator reads it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import zipfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np

from quantizer.common import quiet_stderr, sha256_bytes

GRANULARITY = {"channel": "CHANNELWISE", "tensor": "TENSORWISE"}
RECIPES = ("static_int8", "fp16", "dynamic_int8")


class RecipeError(ValueError):
    """A recipe file that is not an ai-edge-quantizer recipe list."""


# ------------------------------------------------------------------------------------------ recipes
def load_recipe(path_or_name: str | Path) -> list[dict]:
    """A recipe by file path or by the name of a packaged one (``static_int8``, ``fp16``, ``dynamic_int8``)."""
    if str(path_or_name) in RECIPES:
        text = resources.files("quantizer").joinpath("recipes", f"{path_or_name}.json").read_text()
        where = f"recipes/{path_or_name}.json"
    else:
        p = Path(path_or_name)
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"{p}: cannot read recipe ({getattr(e, 'strerror', None) or e})") from None
        where = str(p)
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecipeError(f"{where}: invalid JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(rec, list) or not rec or not all(isinstance(r, dict) for r in rec):
        raise RecipeError(f"{where}: a recipe is a non-empty JSON list of rules")
    for k, r in enumerate(rec):
        missing = [f for f in ("regex", "operation", "algorithm_key") if f not in r]
        if missing:
            raise RecipeError(f"{where}: rule {k} lacks {', '.join(missing)}")
        if r["algorithm_key"] != "no_quantize" and not isinstance(r.get("op_config"), dict):
            raise RecipeError(f"{where}: rule {k} lacks op_config")
    return rec


def with_granularity(recipe: list[dict], granularity: str) -> list[dict]:
    """A copy with every rule's weight granularity set (``channel`` | ``tensor``)."""
    out = copy.deepcopy(recipe)
    for r in out:
        w = (r.get("op_config") or {}).get("weight_tensor_config")
        if isinstance(w, dict) and str(w.get("dtype", "INT")).upper() == "INT":
            w["granularity"] = GRANULARITY[granularity]
    return out


def recipe_activation_bits(recipe: list[dict]) -> int | None:
    bits = {(r.get("op_config") or {}).get("activation_tensor_config", {}).get("num_bits") for r in recipe}
    bits.discard(None)
    return bits.pop() if len(bits) == 1 else None


# ------------------------------------------------------------------------------------------ quantizing
@contextlib.contextmanager
def _quiet():
    """ai-edge-quantizer draws tqdm bars and LiteRT prints on fd 2: keep our stderr to our own lines."""
    with quiet_stderr(), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def strip_appended(data: bytes) -> bytes:
    """The flatbuffer without an appended zip (metadata.json), for tools that re-serialise the model."""
    start = _zip_start(data)
    return data if start is None else data[:start]


def _zip_start(data: bytes) -> int | None:
    bio = io.BytesIO(data)
    if not zipfile.is_zipfile(bio):
        return None
    with zipfile.ZipFile(bio) as z:
        infos = z.infolist()
        return min(i.header_offset for i in infos) if infos else None


def signature(data: bytes) -> tuple[str, str, str]:
    """(signature key, input name in the signature, input tensor name) of a single-input model."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        it = Interpreter(model_content=bytes(data))
    sigs = it.get_signature_list()
    if not sigs:
        raise ValueError("the model has no SignatureDef (ai-edge-quantizer needs one)")
    key = next(iter(sigs))
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise ValueError(f"signature {key} has {len(inputs)} inputs; one image input expected")
    return key, inputs[0], it.get_input_details()[0]["name"]


_TEMPLATES: dict[tuple[str, str], dict] = {}


def qsv_template(data: bytes, recipe: list[dict]) -> dict[str, dict]:
    """The tensors ai-edge-quantizer wants ranges for (and their QSV shapes): one calibration call on zeros,
    made once per model and recipe (every strategy and sample count of a parent shares it)."""
    memo = (sha256_bytes(data), json.dumps(recipe, sort_keys=True))
    if memo not in _TEMPLATES:
        if len(_TEMPLATES) >= 8:
            _TEMPLATES.pop(next(iter(_TEMPLATES)))
        _TEMPLATES[memo] = _qsv_template(data, recipe)
    return _TEMPLATES[memo]


def _qsv_template(data: bytes, recipe: list[dict]) -> dict[str, dict]:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    key, name, _ = signature(data)
    with quiet_stderr():
        it = Interpreter(model_content=bytes(data))
    d = it.get_input_details()[0]
    x = np.zeros(d["shape"], d["dtype"])
    with _quiet():
        q = quantizer.Quantizer(bytearray(data), recipe)
        return q.calibrate({key: [{name: x}]}, num_threads=1)


def quantize_static(float_model: bytes, ranges: Mapping[str, tuple[float, float]], recipe: list[dict],
                    input_range: tuple[float, float] | None = None) -> bytes:
    """An INT8 model of ``float_model`` whose activation ranges are ``ranges`` (sanitised by the caller)."""
    from ai_edge_quantizer import quantizer

    data = strip_appended(float_model)
    template = qsv_template(data, recipe)
    _, _, input_tensor = signature(data)
    missing = [k for k in template if k not in ranges and k != input_tensor]
    if missing:
        raise ValueError(f"no statistics for {len(missing)} tensors ai-edge-quantizer needs (first: {missing[0]})")
    qsv = {}
    for k, proto in template.items():
        lo, hi = input_range if (k == input_tensor and input_range) else ranges[k]
        qsv[k] = {"min": np.full_like(proto["min"], lo, dtype=np.float32),
                  "max": np.full_like(proto["max"], hi, dtype=np.float32)}
    with _quiet():
        res = quantizer.Quantizer(bytearray(data), recipe).quantize(qsv, enable_progress_bar=False,
                                                                   enable_progress_report=False)
    return bytes(res.quantized_model)


def reference(float_model: bytes, kind: str, granularity: str = "channel") -> bytes:
    """``fp16`` or ``dynamic`` variant (no calibration)."""
    from ai_edge_quantizer import quantizer

    name = {"fp16": "fp16", "dynamic": "dynamic_int8"}[kind]
    recipe = with_granularity(load_recipe(name), granularity)
    with _quiet():
        res = quantizer.Quantizer(bytearray(strip_appended(float_model)), recipe).quantize(
            enable_progress_bar=False, enable_progress_report=False)
    return bytes(res.quantized_model)


# ------------------------------------------------------------------------------------------ flatbuffer edits
def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def _pack(model) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _serialize(model, data: bytes) -> bytes:
    """The edited flatbuffer followed by the source's buffer data stored after it (ai-edge-quantizer writes
    weights as offset/size buffers behind the flatbuffer): kept in place when the new flatbuffer fits in
    front of them, else moved to the next 16-byte boundary with their offsets."""
    ext = [int(b.offset) for b in model.buffers or [] if b.offset > 1]
    tail = min(ext) if ext else len(strip_appended(data))
    fb = _pack(model)
    pos = tail if len(fb) <= tail else -(-len(fb) // 16) * 16
    if pos != tail:
        for b in model.buffers:
            if b.offset > 1:
                b.offset += pos - tail
        fb = _pack(model)
        assert len(fb) <= pos, "repacking with moved offsets grew the flatbuffer"
    return fb + b"\0" * (pos - len(fb)) + (strip_appended(data)[tail:] if ext else b"")


def uint8_input(data: bytes) -> bytes:
    """The uint8-input patch (see the module docstring); ``data`` must have one int8 input."""
    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(data, 0))
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or sg.tensors[int(sg.inputs[0])].type != s.TensorType.INT8:
        raise ValueError("the uint8-input patch needs one int8 input")
    t = int(sg.inputs[0])
    old = sg.tensors[t]
    q = s.QuantizationParametersT()
    q.scale = np.array(old.quantization.scale, np.float32)
    q.zeroPoint = np.array([int(z) + 128 for z in old.quantization.zeroPoint], np.int64)
    q.quantizedDimension = old.quantization.quantizedDimension
    if any(z > 255 for z in q.zeroPoint):
        raise ValueError("input zero point + 128 leaves the uint8 range")
    u = s.TensorT()
    name = old.name if isinstance(old.name, bytes) else str(old.name).encode()
    u.name = name + b"_uint8"
    u.shape = np.array(old.shape, np.int32)
    u.shapeSignature = None if old.shapeSignature is None else np.array(old.shapeSignature, np.int32)
    u.type, u.buffer, u.hasRank, u.quantization = s.TensorType.UINT8, 0, old.hasRank, q
    sg.tensors.append(u)
    ui = len(sg.tensors) - 1
    code = next((k for k, c in enumerate(model.operatorCodes)
                 if max(c.builtinCode, c.deprecatedBuiltinCode) == s.BuiltinOperator.QUANTIZE), None)
    if code is None:
        c = s.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = s.BuiltinOperator.QUANTIZE
        c.version = 1
        model.operatorCodes.append(c)
        code = len(model.operatorCodes) - 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, np.array([ui], np.int32), np.array([t], np.int32)
    sg.operators.insert(0, op)
    sg.inputs = np.array([ui], np.int32)
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex == 0:
            for tm in sd.inputs or []:
                if tm.tensorIndex == t:
                    tm.tensorIndex = ui
    return _serialize(model, data)


def append_metadata(data: bytes, metadata: Mapping) -> bytes:
    """``data`` (any appended zip removed) + a zip holding ``metadata.json``, as Ultralytics' LiteRT export
    writes it (the validator reads names, imgsz, task and stride from there)."""
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("metadata.json", date_time=(1980, 1, 1, 0, 0, 0))  # byte-identical reruns
        z.writestr(info, json.dumps(dict(metadata), sort_keys=True, default=str))
    return strip_appended(data) + bio.getvalue()


def read_metadata(data: bytes) -> dict | None:
    start = _zip_start(data)
    if start is None:
        return None
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        if "metadata.json" not in z.namelist():
            return None
        return json.loads(z.read("metadata.json"))


# ------------------------------------------------------------------------------------------ reading back
def tensor_quantization(data: bytes) -> dict[str, dict]:
    """Every tensor's dtype and quantization as the interpreter reports them: ``{name: {dtype, scales,
    zero_points}}`` (empty lists for float tensors)."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        it = Interpreter(model_content=bytes(data))
    out = {}
    for d in it.get_tensor_details():
        qp = d.get("quantization_parameters") or {}
        out[d["name"]] = {"dtype": np.dtype(d["dtype"]).name, "scales": [float(v) for v in qp.get("scales", [])],
                          "zero_points": [int(v) for v in qp.get("zero_points", [])]}
    return out


def io_description(data: bytes) -> dict:
    """Input and outputs: name, shape, dtype, (scale, zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        it = Interpreter(model_content=bytes(data))

    def row(d):
        s, z = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "scale": float(s), "zero_point": int(z)}

    return {"inputs": [row(d) for d in it.get_input_details()], "outputs": [row(d) for d in it.get_output_details()]}
