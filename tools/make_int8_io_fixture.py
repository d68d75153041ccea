"""Turn an INT8 TFLite with float I/O into one with quantized I/O (int8, or uint8 input), nothing else changed.

Ultralytics' LiteRT export (``tests/fixtures/models/shapes-{det,seg}.int8.tflite``) keeps float32 input and
outputs around an int8 graph: the first op QUANTIZEs the float input to int8, the last ops DEQUANTIZE the
int8 results to float. Models made for NPUs (older onnx2tf exports, TF converters with
``inference_input_type=tf.int8/tf.uint8``) expose the quantized tensors themselves. This script makes such a
model out of a float-I/O one by editing the flatbuffer with the schema of ``ai_edge_litert``
(``schema_py_generated``, object API), so the validator can be tested end to end on a really trained model
with quantized I/O:

* input: the subgraph input becomes the int8 output tensor of the leading QUANTIZE op (its name, scale and
  zero point kept) and that op is removed;
* outputs: every subgraph output produced by a DEQUANTIZE op becomes that op's int8 input tensor and the op
  is removed;
* the float tensors this leaves unreferenced are dropped (the tensors after them move up the list);
  the SignatureDefs are pointed at the new tensor indices;
* ``--uint8-input``: the int8 input becomes a uint8 one with the same scale and zero point + 128 (the same
  real values). The tensor's type and zero point are changed in place when the ops consuming it accept
  uint8 — checked by running the model: the result must load and give bit-identical outputs for the
  same real input. When they do not (most int8 kernels require input and output of one type; TRANSPOSE
  here), the "uint8-input patch" is applied instead: a new UINT8 input tensor (``<int8 name>_uint8``,
  same scale, zero point + 128) feeds a new QUANTIZE op (uint8 -> int8, an exact shift by 128) whose output
  is the old int8 input; subgraph inputs and SignatureDef follow.

Everything else is carried over unchanged: operators, opcodes (an opcode left unused stays in the table),
buffers, metadata, tensor names. Weights that Ultralytics' export stores after the flatbuffer (buffers with
``offset``/``size``) stay byte for byte where they were when the new, smaller flatbuffer fits in front of them
(zero padding fills the gap), else they move to the next 16-byte boundary and their offsets follow. The zip
appended by Ultralytics (``metadata.json``: names, imgsz, task) is carried over as the same bytes after them;
``zipfile`` must read the same members from the result. Before editing, the script checks that the object
API round trip of the unchanged model reproduces the source flatbuffer byte for byte (nothing is lost on the
way); the output is deterministic (rerunning gives byte-identical files).

Commands (as run to make the committed fixtures; ai-edge-litert 2.3.0, flatbuffers 25.12.19, numpy 2.4.6)::

    .venv/bin/python tools/make_int8_io_fixture.py                 # both fixtures, from the committed .int8
    .venv/bin/python tools/make_int8_io_fixture.py SRC.tflite DST.tflite [--uint8-input]   # any model

    # compare each new model with its source on real images (letterboxed to the input size):
    .venv/bin/python -m validator.datasets shapes --out /tmp/shapes-io --images 20 --seed 3
    .venv/bin/python tools/make_int8_io_fixture.py --verify /tmp/shapes-io

``--verify DIR`` runs source and new model on every image of ``DIR/images`` and reports, per output, (a) the
difference when the new model gets exactly the int8 values the source's own QUANTIZE produced (must be 0:
same integer graph, and DEQUANTIZE is exact) and (b) the difference in output quantization steps when it gets
the validator's rounding of the pixels (``validator.data.preprocess``), the way ``validate`` feeds it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "fixtures" / "models"
# new fixture -> (source fixture, uint8 input)
FIXTURES = {
    "shapes-det.int8io.tflite": ("shapes-det.int8.tflite", False),
    "shapes-seg.int8io.tflite": ("shapes-seg.int8.tflite", True),
}
ALIGN = 16  # external (offset/size) buffers start on 16-byte boundaries, as the TFLite converter writes them


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def _enum_names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(model, op) -> str:
    s = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    return _enum_names(s.BuiltinOperator).get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def _dtype(t) -> str:
    return _enum_names(_schema().TensorType).get(t.type, f"type{t.type}")


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _quant(t) -> tuple[float, int] | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0


def describe(t, index: int) -> str:
    q = _quant(t)
    qs = f"scale {q[0]:.9g}, zero point {q[1]}" if q else "no quantization"
    return f"#{index} '{_text(t.name)}' {[int(d) for d in t.shape]} {_dtype(t)} ({qs})"


# ------------------------------------------------------------------------------------------ file layout
def _zip_start(data: bytes) -> int | None:
    """Where an appended zip begins (``zipfile`` corrects its offsets for data in front), or None."""
    bio = io.BytesIO(data)
    if not zipfile.is_zipfile(bio):
        return None
    with zipfile.ZipFile(bio) as z:
        infos = z.infolist()
        return min(i.header_offset for i in infos) if infos else None


def _zip_members(data: bytes) -> dict[str, bytes]:
    bio = io.BytesIO(data)
    if not zipfile.is_zipfile(bio):
        return {}
    with zipfile.ZipFile(bio) as z:
        return {n: z.read(n) for n in z.namelist()}


def _tail_start(model, data: bytes) -> int:
    """Start of what follows the flatbuffer: external buffer data, else the zip, else the end of the file."""
    ext = [int(b.offset) for b in model.buffers or [] if b.offset > 1]
    if ext:
        return min(ext)
    z = _zip_start(data)
    return len(data) if z is None else z


def pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def load(data: bytes):
    s = _schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAs(data, 0))


def serialize(model, data: bytes) -> bytes:
    """The new flatbuffer, then the source file's tail (external buffers, appended zip) byte for byte."""
    tail = _tail_start(model, data)
    fb = pack(model)
    pos = tail if len(fb) <= tail else -(-len(fb) // ALIGN) * ALIGN
    if pos != tail:  # the tail moves: external buffer offsets follow (same field sizes, same length)
        for b in model.buffers:
            if b.offset > 1:
                b.offset += pos - tail
        fb2 = pack(model)
        assert len(fb2) == len(fb), "repacking with moved offsets changed the flatbuffer size"
        fb = fb2
    return fb + b"\0" * (pos - len(fb)) + data[tail:]


# ------------------------------------------------------------------------------------------ graph edits
def _consumers(sg, t: int) -> list[int]:
    return [k for k, op in enumerate(sg.operators) if t in [int(i) for i in op.inputs]]


def _producer(sg, t: int) -> int | None:
    return next((k for k, op in enumerate(sg.operators) if t in [int(i) for i in op.outputs]), None)


def _signature_maps(model, sg_index: int):
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex == sg_index:
            yield from (sd.inputs or [])
            yield from (sd.outputs or [])


def _retarget_signatures(model, sg_index: int, old: int, new: int) -> None:
    for tm in _signature_maps(model, sg_index):
        if tm.tensorIndex == old:
            tm.tensorIndex = new


def _referenced(sg) -> set[int]:
    refs = {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
    for op in sg.operators:
        refs |= {int(i) for i in op.inputs} | {int(i) for i in op.outputs}
        refs |= {int(i) for i in (op.intermediates if op.intermediates is not None else [])}
    return refs - {-1}


def _drop_tensors(model, sg_index: int, dead: set[int]) -> None:
    """Remove unreferenced activation tensors and renumber every tensor index of the subgraph."""
    sg = model.subgraphs[sg_index]
    assert not dead & _referenced(sg), "a tensor to drop is still referenced"
    assert not any(tm.tensorIndex in dead for tm in _signature_maps(model, sg_index))
    for i in dead:
        b = model.buffers[sg.tensors[i].buffer]
        assert b.data is None or len(b.data) == 0, "a tensor to drop holds data"
    keep = [i for i in range(len(sg.tensors)) if i not in dead]
    new = {old: k for k, old in enumerate(keep)}

    def remap(v):
        return None if v is None else np.array([new[int(i)] if i >= 0 else int(i) for i in v], np.int32)

    for op in sg.operators:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for tm in _signature_maps(model, sg_index):
        tm.tensorIndex = new[tm.tensorIndex]
    sg.tensors = [sg.tensors[i] for i in keep]


def to_quantized_io(model, sg_index: int = 0) -> list[str]:
    """Drop the leading QUANTIZE and trailing DEQUANTIZE ops; returns what changed, one line each."""
    s = _schema()
    sg = model.subgraphs[sg_index]
    changes, removed_ops, dead = [], set(), set()
    new_inputs = []
    for t in [int(i) for i in sg.inputs]:
        users = _consumers(sg, t)
        op = sg.operators[users[0]] if len(users) == 1 else None
        if (op is None or _op_name(model, op) != "QUANTIZE" or sg.tensors[t].type != s.TensorType.FLOAT32
                or _quant(sg.tensors[int(op.outputs[0])]) is None):
            changes.append(f"input {describe(sg.tensors[t], t)} kept (not read by one QUANTIZE op alone)")
            new_inputs.append(t)
            continue
        q = int(op.outputs[0])
        changes.append(f"input  {describe(sg.tensors[t], t)} -> {describe(sg.tensors[q], q)}; QUANTIZE op "
                       f"#{users[0]} removed")
        new_inputs.append(q)
        removed_ops.add(users[0])
        dead.add(t)
        _retarget_signatures(model, sg_index, t, q)
    new_outputs = []
    for t in [int(i) for i in sg.outputs]:
        k = _producer(sg, t)
        op = sg.operators[k] if k is not None else None
        if op is None or _op_name(model, op) != "DEQUANTIZE" or _quant(sg.tensors[int(op.inputs[0])]) is None:
            changes.append(f"output {describe(sg.tensors[t], t)} kept (not made by a DEQUANTIZE op)")
            new_outputs.append(t)
            continue
        q = int(op.inputs[0])
        changes.append(f"output {describe(sg.tensors[t], t)} -> {describe(sg.tensors[q], q)}; DEQUANTIZE op "
                       f"#{k} removed")
        new_outputs.append(q)
        removed_ops.add(k)
        dead.add(t)
        _retarget_signatures(model, sg_index, t, q)
    if not removed_ops:
        raise ValueError("no leading QUANTIZE or trailing DEQUANTIZE op: the model has no float I/O to remove")
    sg.inputs, sg.outputs = np.array(new_inputs, np.int32), np.array(new_outputs, np.int32)
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in removed_ops]
    dead -= _referenced(sg)  # a float tensor still read elsewhere stays
    _drop_tensors(model, sg_index, dead)
    changes.append(f"{len(removed_ops)} ops and {len(dead)} float tensors removed; later tensor indices shift "
                   "down accordingly")
    return changes


def _uint8_quant(q):
    s = _schema()
    u = s.QuantizationParametersT()
    u.scale = np.array(q.scale, np.float32)
    u.zeroPoint = np.array([int(z) + 128 for z in q.zeroPoint], np.int64)
    u.quantizedDimension = q.quantizedDimension
    return u


def uint8_input(model, data: bytes, sg_index: int = 0) -> list[str]:
    """Make the (single) int8 input a uint8 one with the same real values; see the module docstring."""
    import copy

    s = _schema()
    sg = model.subgraphs[sg_index]
    if len(sg.inputs) != 1 or sg.tensors[int(sg.inputs[0])].type != s.TensorType.INT8:
        raise ValueError("--uint8-input needs one int8 input")
    t = int(sg.inputs[0])
    tensor = sg.tensors[t]
    zp = [int(z) for z in tensor.quantization.zeroPoint]
    if any(z + 128 > 255 for z in zp):
        raise ValueError(f"zero point {zp} + 128 is out of the uint8 range")
    users = [_op_name(model, sg.operators[k]) for k in _consumers(sg, t)]
    # 1) in place: change type and zero point, keep it only if the model then runs with the same outputs
    trial = copy.deepcopy(model)
    tt = trial.subgraphs[sg_index].tensors[t]
    tt.type, tt.quantization = s.TensorType.UINT8, _uint8_quant(tensor.quantization)
    ok, why = _same_results(serialize(copy.deepcopy(model), data), serialize(trial, data))
    if ok:
        model.subgraphs[sg_index] = trial.subgraphs[sg_index]
        return [f"input  {describe(tensor, t)} -> {describe(tt, t)} in place (its consumers "
                f"{', '.join(users)} accept uint8 with identical results)"]
    # 2) the uint8-input patch: new uint8 tensor -> QUANTIZE (uint8 -> int8) -> the old int8 input
    u = s.TensorT()
    u.name = _text(tensor.name).encode() + b"_uint8"
    u.shape = np.array(tensor.shape, np.int32)
    u.shapeSignature = None if tensor.shapeSignature is None else np.array(tensor.shapeSignature, np.int32)
    u.type, u.buffer, u.hasRank = s.TensorType.UINT8, 0, tensor.hasRank
    u.quantization = _uint8_quant(tensor.quantization)
    sg.tensors.append(u)
    ui = len(sg.tensors) - 1
    code = next((k for k, c in enumerate(model.operatorCodes)
                 if max(c.builtinCode, c.deprecatedBuiltinCode) == s.BuiltinOperator.QUANTIZE), None)
    if code is None:
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = s.BuiltinOperator.QUANTIZE, s.BuiltinOperator.QUANTIZE, 1
        model.operatorCodes.append(c)
        code = len(model.operatorCodes) - 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, np.array([ui], np.int32), np.array([t], np.int32)
    sg.operators.insert(0, op)
    sg.inputs = np.array([ui], np.int32)
    _retarget_signatures(model, sg_index, t, ui)
    return [f"input  {describe(tensor, t)}: consumers {', '.join(users)} refuse uint8 ({why}); uint8-input patch: "
            f"new input {describe(u, ui)} -> new QUANTIZE op #0 -> {describe(tensor, t)}"]


# ------------------------------------------------------------------------------------------ running
@contextlib.contextmanager
def _quiet_stderr():
    """LiteRT's C++ side prints its errors and 'INFO: Created ... delegate' on fd 2."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def interpreter(content: bytes, **kw):
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_stderr():
        it = Interpreter(model_content=content, num_threads=1, **kw)
        it.allocate_tensors()
    return it


def _run(it, x: np.ndarray) -> list[np.ndarray]:
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


def _same_results(int8_model: bytes, uint8_model: bytes) -> tuple[bool, str]:
    """Does the uint8-input model load and give bit-identical outputs to the int8 one on the same input?

    Asked of the builtin kernels alone and of the default runtime (XNNPACK delegate, what ``validate`` uses)."""
    from ai_edge_litert.interpreter import OpResolverType

    for resolver in (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.AUTO):
        a = interpreter(int8_model, experimental_op_resolver_type=resolver)
        shape = a.get_input_details()[0]["shape"]
        x = np.random.default_rng(0).integers(-128, 128, size=shape, dtype=np.int8)
        try:
            b = interpreter(uint8_model, experimental_op_resolver_type=resolver)
            ya, yb = _run(a, x), _run(b, (x.astype(np.int16) + 128).astype(np.uint8))
        except (RuntimeError, ValueError) as e:
            return False, (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        if not all(np.array_equal(p, q) for p, q in zip(ya, yb, strict=True)):
            return False, f"loads but gives different outputs ({resolver.name})"
    return True, "identical outputs"


# ------------------------------------------------------------------------------------------ main steps
def convert(data: bytes, uint8: bool = False) -> tuple[bytes, list[str]]:
    """Source file bytes -> (new file bytes, what changed)."""
    model = load(data)
    same = pack(model)
    if same != data[: len(same)] or len(same) > _tail_start(model, data):
        print("warning: the object API round trip does not reproduce the source flatbuffer byte for byte",
              file=sys.stderr)
    if len(model.subgraphs) != 1:
        raise ValueError(f"{len(model.subgraphs)} subgraphs; only single-subgraph models are handled")
    changes = to_quantized_io(model)
    if uint8:
        changes += uint8_input(model, data)
    out = serialize(model, data)
    if _zip_members(out) != _zip_members(data):
        raise AssertionError("the appended zip does not read back the same")
    moved = len(out) - len(data)
    changes.append(f"file {len(data)} -> {len(out)} bytes; "
                   + ("external buffers and appended zip at their old offsets"
                      if _tail_start(load(out), out) == _tail_start(load(data), data)
                      else f"tail moved by {moved} bytes"))
    return out, changes


def io_summary(content: bytes) -> dict:
    it = interpreter(content)

    def row(d):
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}

    return {"inputs": [row(d) for d in it.get_input_details()], "outputs": [row(d) for d in it.get_output_details()],
            "signatures": it.get_signature_list()}


def verify(pairs: list[tuple[Path, Path]], data_dir: Path) -> bool:
    """Run source and new model on every image of ``data_dir/images``; print the differences."""
    from validator.data.preprocess import InputMaker, choose_transform, letterbox, load_image
    from validator.tensors import InputSpec

    images = sorted((data_dir / "images").glob("*.jpg"))
    ok = True
    for src, dst in pairs:
        a_bytes, b_bytes = src.read_bytes(), dst.read_bytes()
        a = interpreter(a_bytes, experimental_preserve_all_tensors=True)
        b = interpreter(b_bytes)
        ai, bi = a.get_input_details()[0], b.get_input_details()[0]
        layout = "NCHW" if int(ai["shape"][1]) == 3 else "NHWC"  # Ultralytics exports NCHW
        hw = tuple(int(v) for v in (ai["shape"][2:4] if layout == "NCHW" else ai["shape"][1:3]))
        bspec = InputSpec(bi["name"], tuple(int(v) for v in bi["shape"]), np.dtype(bi["dtype"]).name, layout, hw,
                          float(bi["quantization"][0]), int(bi["quantization"][1]))
        aspec = InputSpec(ai["name"], tuple(int(v) for v in ai["shape"]), "float32", layout, hw)
        make_a, make_b = InputMaker(aspec, choose_transform(aspec)), InputMaker(bspec, choose_transform(bspec))
        # the int8 tensor the source's QUANTIZE writes: the only consumer of the source input
        sg = load(a_bytes).subgraphs[0]
        first = sg.operators[_consumers(sg, int(sg.inputs[0]))[0]]
        q_name = _text(sg.tensors[int(first.outputs[0])].name)
        q_index = next(d["index"] for d in a.get_tensor_details() if d["name"] == q_name)
        outs = b.get_output_details()
        exact_max = [0.0] * len(outs)
        steps_max, steps_sum, n_vals, n_diff = [0] * len(outs), [0] * len(outs), [0] * len(outs), [0] * len(outs)
        in_diff, in_total = 0, 0
        for path in images:
            canvas, _ = letterbox(load_image(path), hw)
            ya = _run(a, make_a(canvas).copy())
            q_src = a.get_tensor(q_index).copy()
            x_src = q_src if bi["dtype"] == np.int8 else (q_src.astype(np.int16) + 128).astype(np.uint8)
            yb_exact = _run(b, x_src)
            x_val = make_b(canvas).copy()
            in_diff += int(np.count_nonzero(x_val.astype(np.int16) != x_src.astype(np.int16)))
            in_total += x_val.size
            yb_val = _run(b, x_val)
            for k, o in enumerate(outs):
                scale, zp = o["quantization"]
                deq = (yb_exact[k].astype(np.float32) - zp) * np.float32(scale)
                exact_max[k] = max(exact_max[k], float(np.abs(deq - ya[k]).max()))
                steps = np.abs(yb_val[k].astype(np.int32) - np.round(ya[k] / scale + zp).astype(np.int32))
                steps_max[k] = max(steps_max[k], int(steps.max()))
                steps_sum[k] += int(steps.sum())
                n_diff[k] += int(np.count_nonzero(steps))
                n_vals[k] += steps.size
        print(f"{dst.name} vs {src.name} on {len(images)} images of {data_dir}:")
        print(f"  input: the validator's rounding differs from the source's QUANTIZE in {in_diff} of {in_total} "
              f"values ({100 * in_diff / max(in_total, 1):.4f} %)")
        for k, o in enumerate(outs):
            print(f"  output {o['name']} (step {o['quantization'][0]:.9g}): with the source's int8 input, max |new "
                  f"dequantized - source float| = {exact_max[k]:g}; with the validator's input, "
                  f"{n_diff[k]} of {n_vals[k]} values differ ({100 * n_diff[k] / max(n_vals[k], 1):.4f} %), "
                  f"max {steps_max[k]} step(s), mean {steps_sum[k] / max(n_vals[k], 1):.6f} steps")
            ok &= exact_max[k] == 0.0
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="?", type=Path, help="INT8 TFLite with float I/O (default: the two fixtures)")
    ap.add_argument("dst", nargs="?", type=Path, help="where to write the quantized-I/O model")
    ap.add_argument("--uint8-input", action="store_true", help="make the input uint8 (zero point + 128)")
    ap.add_argument("--verify", type=Path, metavar="DIR",
                    help="after writing, compare new and source model on DIR/images (a COCO-format split)")
    args = ap.parse_args(argv)
    if (args.src is None) != (args.dst is None):
        ap.error("give both SRC and DST, or neither (then the fixtures are made)")
    jobs = ([(args.src, args.dst, args.uint8_input)] if args.src is not None
            else [(MODELS / src, MODELS / dst, u8) for dst, (src, u8) in FIXTURES.items()])
    for src, dst, u8 in jobs:
        data = src.read_bytes()
        out, changes = convert(data, u8)
        dst.write_bytes(out)
        print(f"{src} -> {dst}")
        for line in changes:
            print(f"  {line}")
        summ = io_summary(out)
        for kind in ("inputs", "outputs"):
            for r in summ[kind]:
                print(f"  interpreter {kind[:-1]}: {r['name']} {r['shape']} {r['dtype']} q({r['quantization'][0]:.9g},"
                      f" {r['quantization'][1]})")
        print(f"  signatures: {summ['signatures']}")
    if args.verify is not None:
        return 0 if verify([(src, dst) for src, dst, _ in jobs], args.verify) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
