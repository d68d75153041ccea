"""Output layouts of a YOLOv8/11 ONNX export, rewritten before conversion and quantization.

* ``monolithic`` -- the export as it is: one ``[1, 4+nc(+nm), N]`` output in which pixel boxes (0..imgsz)
  and class scores (0..1) share one quantization scale (every score below ~half a box step rounds to 0:
  the known-bad control), plus the prototypes of a seg model.
* ``split`` -- the final Concat removed; its inputs become the outputs, each with its own scale:
  ``boxes`` ``[1,4,N]`` cx,cy,w,h divided by the input width/height inside the graph ([0,1]; the division is
  folded into the stride constant the boxes are multiplied by, so no extra rounding step), ``scores``
  ``[1,nc,N]``, and for seg ``mask_coefs`` ``[1,nm,N]`` and ``protos``. The validator reads this contract
  from the shapes alone (``yolo_split``).

Both layouts also get :func:`prepare`: ``Constant`` nodes become initializers. onnx2tf turns a Split whose
sizes come from a Constant node into a ``FlexSplitV`` (a TensorFlow op no TFLite runtime here can run);
from an initializer it emits builtin slices. The arithmetic is unchanged.

Metadata (``metadata_props``, Ultralytics' keys the validator reads: names, imgsz, task, stride) is kept
and ``layout``, ``boxes`` (pixels | normalized) and ``outputs`` (output roles in order) are added, so a
variant needs no ``validate`` flags. :func:`output_roles` tells which rows of which output are boxes,
scores, coefficients or prototypes (for per-output SQNR).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

LAYOUTS = ("monolithic", "split")
SPLIT_NAMES = {"boxes": "boxes", "scores": "scores", "coefs": "mask_coefs", "protos": "protos"}


class LayoutError(ValueError):
    """The graph is not a YOLO head this rewrite understands (message names what was found)."""


@dataclass(frozen=True)
class Head:
    """Where the YOLO head's pieces are: the final Concat and its box / score / coefficient inputs."""

    preds: str  # the monolithic output tensor
    concat: str  # name of the Concat node making it
    boxes: str
    scores: str
    coefs: str | None
    protos: str | None
    num_classes: int
    num_masks: int
    anchors: int
    input_hw: tuple[int, int]


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def prepare(model):
    """A copy with every ``Constant`` node (``value`` attribute) turned into an initializer of its output name."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return m


def _shapes(model) -> dict[str, list[int | None]]:
    import onnx

    g = onnx.shape_inference.infer_shapes(model).graph
    out = {}
    for v in (*g.value_info, *g.input, *g.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def find_head(model) -> Head:
    """The YOLO head of an Ultralytics-style export (monolithic preds from a Concat along channels)."""
    g = model.graph
    if len(g.input) != 1:
        raise LayoutError(f"{len(g.input)} graph inputs; a YOLO export has one image input")
    shapes = _shapes(model)
    in_shape = shapes.get(g.input[0].name) or []
    if len(in_shape) != 4 or None in in_shape[2:]:
        raise LayoutError(f"input {g.input[0].name} {in_shape} is not a static NCHW image")
    hw = (int(in_shape[2]), int(in_shape[3]))
    producer = {o: n for n in g.node for o in n.output}
    preds = protos = None
    for o in g.output:
        s = shapes.get(o.name) or []
        if len(s) == 4:
            protos = o.name
        elif len(s) == 3:
            if preds is not None:
                raise LayoutError("more than one 3-D output: already split, or not a YOLOv8/11 export")
            preds = o.name
    if preds is None:
        raise LayoutError("no 3-D [1, 4+nc, N] output")
    node = producer.get(preds)
    if node is None or node.op_type != "Concat" or _attr(node, "axis") not in (1, -2):
        raise LayoutError(f"output {preds} is not made by a Concat along channels "
                          f"({node.op_type if node is not None else 'graph input'})")
    chans = [(shapes.get(i) or [None, None, None])[1] for i in node.input]
    if None in chans or not 2 <= len(chans) <= 3 or chans[0] != 4:
        raise LayoutError(f"the final Concat's inputs have {chans} channels; expected [4, nc] or [4, nc, nm]")
    if (len(chans) == 3) != (protos is not None):
        raise LayoutError("mask coefficients and prototypes must come together")
    return Head(preds, node.name, node.input[0], node.input[1], node.input[2] if len(chans) == 3 else None,
                protos, int(chans[1]), int(chans[2]) if len(chans) == 3 else 0,
                int((shapes.get(preds) or [0, 0, 0])[2] or 0), hw)


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        for seq in (node.input, node.output):
            for k, v in enumerate(seq):
                if v == old:
                    seq[k] = new
    for v in (*graph.output, *graph.value_info):
        if v.name == old:
            v.name = new


def _normalize_boxes(model, head: Head) -> str:
    """Divide the boxes by the input size: folded into the Mul by the stride constant when the boxes come
    from one, else a Mul appended. Returns the name of the tensor holding [0,1] boxes.

    The constant keeps its shape for a square input (a plain division) and becomes ``[4, N]`` otherwise:
    onnx2tf reads 3-D constants as NCW and transposes them, so none is made here."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    h, w = head.input_hw
    per_row = np.array([1 / w, 1 / h, 1 / w, 1 / h], np.float32).reshape(4, 1)
    inits = {i.name: i for i in g.initializer}
    node = next((n for n in g.node if head.boxes in n.output), None)
    users = [n for n in g.node if head.boxes in n.input]
    if node is not None and node.op_type == "Mul" and len(users) == 1:
        const = [k for k, i in enumerate(node.input) if i in inits]
        if len(const) == 1:
            k = const[0]
            value = numpy_helper.to_array(inits[node.input[k]]).astype(np.float32)
            if h == w:
                folded = value / np.float32(w)
            elif value.ndim <= 2 and value.size in (1, head.anchors) and head.anchors:
                folded = value.reshape(1, -1) * per_row
            else:
                folded = None
            if folded is not None:
                name = f"{node.input[k]}_over_imgsz"
                g.initializer.append(numpy_helper.from_array(folded.astype(np.float32), name))
                node.input[k] = name
                return head.boxes
    name = "boxes_imgsz_scale"
    g.initializer.append(numpy_helper.from_array(per_row, name))
    out = f"{head.boxes}_normalized"
    g.node.append(onnx.helper.make_node("Mul", [head.boxes, name], [out], name="normalize_boxes"))
    return out


def _metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_metadata(model, values: dict[str, str]) -> None:
    md = _metadata(model)
    md.update(values)
    del model.metadata_props[:]
    for k, v in md.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v


def split(model):
    """The ``split`` layout of a prepared model (see the module docstring)."""
    import onnx

    head = find_head(model)
    shapes = _shapes(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    boxes = _normalize_boxes(m, head)
    shapes.setdefault(boxes, shapes.get(head.boxes))
    outs = {"boxes": boxes, "scores": head.scores}
    if head.coefs:
        outs["coefs"] = head.coefs
    if head.protos:
        outs["protos"] = head.protos
    old_outputs = {o.name: o for o in g.output}
    keep_nodes = [n for n in g.node if head.preds not in n.output]  # drop the final Concat
    del g.node[:]
    g.node.extend(keep_nodes)
    del g.output[:]
    for role, tensor in outs.items():
        name = SPLIT_NAMES[role]
        if tensor in old_outputs:  # the protos: keep their declared type and shape
            g.output.append(old_outputs[tensor])
        else:
            g.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, shapes.get(tensor)))
        _rename(g, tensor, name)
    _set_metadata(m, {"layout": "split", "boxes": "normalized",
                      "outputs": ",".join(SPLIT_NAMES[r] for r in outs)})
    _drop_unused_initializers(g)
    onnx.checker.check_model(m)
    return m


def monolithic(model):
    """The export as it is, with its layout recorded in the metadata."""
    import onnx

    head = find_head(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outputs = ["preds"] + (["protos"] if head.protos else [])
    _set_metadata(m, {"layout": "monolithic", "boxes": "pixels", "outputs": ",".join(outputs)})
    return m


def _drop_unused_initializers(g) -> None:
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def apply(model, layout: str):
    """``prepare`` then the layout's rewrite."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    m = prepare(model)
    return split(m) if layout == "split" else monolithic(m)


def metadata_dict(model) -> dict:
    """Ultralytics-style metadata of an ONNX model as plain values (names as a list, imgsz as [h, w])."""
    md = _metadata(model)
    out: dict = {}
    for k, v in md.items():
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------ roles
def output_roles(shapes: list[tuple[int, ...]], num_classes: int | None, layout: str) -> list[list[tuple[str, slice]]]:
    """For each output (by shape, in output order): the (role, channel slice) parts it holds.

    ``split`` outputs are one role each, told by channel count (4 boxes; the prototypes are the 4-D one;
    the coefficients the channel count of the prototypes; the scores the rest). A ``monolithic`` preds
    output is rows 0-3 boxes, then ``num_classes`` score rows, then coefficients. The channel axis is the
    one that is not the anchor count (the larger axis of a 3-D output). Unknown shapes are one ``out`` part.
    """
    def channels(s: tuple[int, ...]) -> int:
        return min(s[1], s[2]) if len(s) == 3 else 0

    proto = next((s for s in shapes if len(s) == 4), None)
    nm = min(proto[1], proto[3]) if proto else 0
    roles = []
    for s in shapes:
        if len(s) == 4:
            roles.append([("protos", slice(None))])
        elif len(s) != 3:
            roles.append([("out", slice(None))])
        elif layout == "split" or (num_classes is None and channels(s) in (4, nm)):
            c = channels(s)
            role = "boxes" if c == 4 else "coefs" if nm and c == nm else "scores"
            roles.append([(role, slice(None))])
        else:
            c = channels(s)
            nc = num_classes if num_classes else c - 4 - nm
            parts = [("boxes", slice(0, 4)), ("scores", slice(4, 4 + nc))]
            if c > 4 + nc:
                parts.append(("coefs", slice(4 + nc, c)))
            roles.append(parts)
    return roles
