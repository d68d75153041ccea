"""Tiny ONNX and TFLite models whose outputs are known by construction.

Every output is ``constant + gain * mean(input)``: with ``gain=0`` a model returns exactly the constants a
test chose (so the decoded detections are known in advance), and with ``gain != 0`` the output reveals the
mean of the tensor the runner actually fed (so input scaling and quantization can be checked).

The TFLite files are written directly with the flatbuffer object API of ``ai_edge_litert`` — no
TensorFlow, no converter — so quantization parameters of inputs and outputs are exactly the ones given.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

ONNX_OPSET = 17

_NP_TO_ONNX = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "float16": 10}


# ------------------------------------------------------------------------------------------------ ONNX
def onnx_model(path: Path, input_shape, input_dtype: str = "float32", outputs: dict | None = None,
               gain: float = 0.0, metadata: dict | None = None, input_name: str = "images") -> Path:
    """Write an ONNX model: input -> Cast(float) -> ReduceMean (scalar) -> * gain -> + constant per output.

    ``input_shape`` may hold strings (symbolic, i.e. dynamic dims). An output whose constant is not float32
    is computed in float and cast to the constant's dtype at the end.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    outputs = outputs or {"output0": np.zeros((1, 6, 84), np.float32)}
    nodes = [
        helper.make_node("Cast", [input_name], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x_f"], ["x_mean"], keepdims=0),  # opset 17: all axes by default
        helper.make_node("Mul", ["x_mean", "gain"], ["x_gain"]),
    ]
    inits = [numpy_helper.from_array(np.array(gain, np.float32), "gain")]
    graph_outputs = []
    for name, const in outputs.items():
        const = np.asarray(const)
        inits.append(numpy_helper.from_array(const.astype(np.float32), f"{name}_const"))
        if const.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_const", "x_gain"], [name]))
        else:
            nodes.append(helper.make_node("Add", [f"{name}_const", "x_gain"], [f"{name}_f"]))
            nodes.append(helper.make_node("Cast", [f"{name}_f"], [name], to=_NP_TO_ONNX[const.dtype.name]))
        graph_outputs.append(helper.make_tensor_value_info(name, _NP_TO_ONNX[const.dtype.name], list(const.shape)))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info(input_name, _NP_TO_ONNX[input_dtype], list(input_shape))],
        graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="tiny")
    model.ir_version = 8  # loadable by every onnxruntime that supports opset 17
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(model)
    Path(path).write_bytes(model.SerializeToString())
    return Path(path)


# ------------------------------------------------------------------------------------------------ TFLite
def _quant(qp):
    from ai_edge_litert import schema_py_generated as s

    if qp is None:
        return None
    q = s.QuantizationParametersT()
    q.scale = [float(qp[0])]
    q.zeroPoint = [int(qp[1])]
    return q


def _metadata_of(model_path: Path) -> tuple[bytes, dict[str, bytes]]:
    """The TFLITE_METADATA (M001) buffer and the appended associated files of a model (written elsewhere)."""
    from ai_edge_litert import schema_py_generated as s

    data = Path(model_path).read_bytes()
    m = s.Model.GetRootAs(data, 0)
    blob = None
    for i in range(m.MetadataLength()):
        if m.Metadata(i).Name() == b"TFLITE_METADATA":
            blob = m.Buffers(m.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    if blob is None:
        raise ValueError(f"{model_path}: no TFLITE_METADATA")
    files = {}
    if zipfile.is_zipfile(model_path):
        with zipfile.ZipFile(model_path) as z:
            files = {n: z.read(n) for n in z.namelist()}
    return blob, files


def tflite_model(path: Path, input_shape, input_dtype: str = "float32", input_quant=None,
                 outputs: dict | None = None, gain: float = 0.0, zip_metadata: dict | None = None,
                 input_name: str = "images", input_signature=None, metadata_from: Path | None = None,
                 fp16_gain: bool = False) -> Path:
    """Write a TFLite model: [DEQUANTIZE] -> MEAN (all axes) -> MUL gain -> ADD constant -> [QUANTIZE].

    ``outputs`` maps name -> (float constant, dtype, (scale, zero_point) or None); an int8/uint8 output is
    the QUANTIZE of the float result with the given parameters, so a test knows its raw integer values.
    ``zip_metadata`` is appended as a zip holding ``metadata.json``, as Ultralytics' LiteRT export does.
    ``input_signature`` (e.g. ``[1, -1, -1, 3]``) marks input dimensions as dynamic.
    ``metadata_from`` copies the TFLite metadata (the ``TFLITE_METADATA`` M001 buffer and the associated
    files appended as a zip) of another model byte for byte: metadata written by tflite-support on a
    model whose outputs react to the input. ``fp16_gain`` stores the gain as a float16 constant behind a
    DEQUANTIZE op, as float16-quantized TFLite models store their weights.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    outputs = outputs or {"output0": (np.zeros((1, 6, 84), np.float32), "float32", None)}
    tt = {"float32": s.TensorType.FLOAT32, "int8": s.TensorType.INT8, "uint8": s.TensorType.UINT8,
          "int32": s.TensorType.INT32}
    tt["float16"] = s.TensorType.FLOAT16
    ops = {"DEQUANTIZE": s.BuiltinOperator.DEQUANTIZE, "MEAN": s.BuiltinOperator.MEAN,
           "MUL": s.BuiltinOperator.MUL, "ADD": s.BuiltinOperator.ADD, "QUANTIZE": s.BuiltinOperator.QUANTIZE}

    buffers = [s.BufferT()]  # buffer 0: the empty sentinel every TFLite model starts with
    tensors: list = []
    operators: list = []
    opcodes: list = []

    def tensor(name, shape, dtype, data=None, quant=None) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type = name, list(shape), tt[dtype]
        t.quantization = _quant(quant)
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            buffers.append(b)
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def op(kind, inputs, outs, opt_type=0, opt=None) -> None:
        code = ops[kind]
        idx = next((i for i, c in enumerate(opcodes) if c.builtinCode == code), None)
        if idx is None:
            c = s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            opcodes.append(c)
            idx = len(opcodes) - 1
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = idx, list(inputs), list(outs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        operators.append(o)

    shape = [int(d) for d in input_shape]
    x = tensor(input_name, shape, input_dtype, quant=input_quant)
    if input_signature is not None:
        tensors[x].shapeSignature = [int(d) for d in input_signature]
    xf = x
    if input_dtype != "float32":
        xf = tensor("x_float", shape, "float32")
        op("DEQUANTIZE", [x], [xf], s.BuiltinOptions.DequantizeOptions, s.DequantizeOptionsT())
    axes = tensor("mean_axes", [len(shape)], "int32", data=np.arange(len(shape), dtype=np.int32))
    mean = tensor("x_mean", [], "float32")
    reducer = s.ReducerOptionsT()
    reducer.keepDims = False
    op("MEAN", [xf, axes], [mean], s.BuiltinOptions.ReducerOptions, reducer)
    if fp16_gain:
        g16 = tensor("gain_fp16", [], "float16", data=np.array(gain, np.float16))
        g = tensor("gain", [], "float32")
        op("DEQUANTIZE", [g16], [g], s.BuiltinOptions.DequantizeOptions, s.DequantizeOptionsT())
    else:
        g = tensor("gain", [], "float32", data=np.array(gain, np.float32))
    mg = tensor("x_gain", [], "float32")
    op("MUL", [mean, g], [mg], s.BuiltinOptions.MulOptions, s.MulOptionsT())
    out_ids = []
    for name, (const, dtype, qp) in outputs.items():
        const = np.asarray(const, np.float32)
        c = tensor(f"{name}_const", const.shape, "float32", data=const)
        if dtype == "float32":
            o = tensor(name, const.shape, "float32")
            op("ADD", [c, mg], [o], s.BuiltinOptions.AddOptions, s.AddOptionsT())
        else:
            f = tensor(f"{name}_float", const.shape, "float32")
            op("ADD", [c, mg], [f], s.BuiltinOptions.AddOptions, s.AddOptionsT())
            o = tensor(name, const.shape, dtype, quant=qp)
            op("QUANTIZE", [f], [o], s.BuiltinOptions.QuantizeOptions, s.QuantizeOptionsT())
        out_ids.append(o)

    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [x], out_ids, operators, "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, opcodes, [sg], buffers
    model.description = "tiny"
    files = {}
    if metadata_from is not None:
        blob, files = _metadata_of(metadata_from)
        b = s.BufferT()
        b.data = np.frombuffer(blob, np.uint8)
        buffers.append(b)
        md = s.MetadataT()
        md.name, md.buffer = "TFLITE_METADATA", len(buffers) - 1
        model.metadata = [md]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(path).write_bytes(bytes(builder.Output()))
    if zip_metadata is not None or files:
        with zipfile.ZipFile(path, "a") as z:  # "a" on a non-zip file appends an archive to it
            if zip_metadata is not None:
                z.writestr("metadata.json", json.dumps(zip_metadata))
            for name, data in files.items():
                z.writestr(name, data)
    return Path(path)


def quantize(values, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Reference affine quantization; tests pick values that are not rounding ties, so the rounding mode is moot."""
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(values, np.float64) / scale) + zero_point, info.min, info.max).astype(dtype)


# ------------------------------------------------------------------------------------------------ YOLO helpers
def anchor_grid(input_hw=(64, 64), strides=(8, 16, 32)) -> np.ndarray:
    """Anchor centres (x, y) in input pixels, in YOLOv8 order: stride 8 row-major, then 16, then 32."""
    pts = []
    for st in strides:
        h, w = input_hw[0] // st, input_hw[1] // st
        for yy in range(h):
            for xx in range(w):
                pts.append(((xx + 0.5) * st, (yy + 0.5) * st))
    return np.array(pts, np.float32)
