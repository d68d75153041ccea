"""Output layouts of a YOLOv8/11/26 ONNX export, rewritten before conversion and quantization.

* ``monolithic`` -- the export as it is: one ``[1, 4+nc(+nm), N]`` output in which pixel boxes (0..imgsz)
  and class scores (0..1) share one quantization scale (every score below ~half a box step rounds to 0:
  the known-bad control), plus the prototypes of a seg model.
* ``split`` -- the final Concat removed; its inputs become the outputs, each with its own scale:
  ``boxes`` ``[1,4,N]`` cx,cy,w,h divided by the input width/height inside the graph ([0,1]; the division is
  folded into the stride constant the boxes are multiplied by, so no extra rounding step), ``scores``
  ``[1,nc,N]``, and for seg ``mask_coefs`` ``[1,nm,N]`` and ``protos``. The validator reads this contract
  from the shapes alone (``yolo_split``).

The YOLO26 end-to-end (one-to-one, NMS-free) head is recognised too: its output ``[1, K, 6]`` (x1, y1, x2, y2
in input pixels, score, class; K = max_det) is a Concat along the last axis of the rows its top-k selection
(ReduceMax, TopK over anchors, GatherElements, TopK over anchor x class) picked from a ``[1, 4+nc, N]``
Concat of pixel boxes and sigmoid scores, as in YOLOv8. Both layouts rebuild that selection with one-hot
matrix products instead of GatherElements (:func:`_onehot_selection`: the same rows, value for value; the
exported form converts but cannot be quantized by ai-edge-quantizer, see there). ``monolithic`` keeps the exported
outputs and their sharing (the ``[1, 4+nc, N]`` Concat and the ``[1, K, 6]`` rows each hold pixel boxes,
scores and, for the rows, class indices under one int8 scale); ``split`` reads the boxes (divided by the
input size, folded as above) and the scores before that Concat and exposes ``boxes`` ``[1,K,4]`` (x1, y1,
x2, y2 in [0,1]) and ``scores`` ``[1,K,nc]`` (each row's score at its class, 0 elsewhere: no integer
output), each with its own scale. The validator reads it as the split form of its ``end2end`` contract. The
one-to-many YOLO26 export (``[1, 4+nc, N]``, cx, cy, w, h) is a YOLOv8-style head and needs nothing new.

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
    end2end: bool = False  # YOLO26 one-to-one head: preds are [1, K, 6] rows after an in-graph top-k
    rows: int = 0  # K (max_det) of an end-to-end head; its boxes / scores are those its top-k selection reads


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
    pshape = shapes.get(preds) or []
    if (node is not None and node.op_type == "Concat" and _attr(node, "axis") in (2, -1)
            and len(pshape) == 3 and pshape[2] == 6):
        if protos is not None:
            raise LayoutError(f"output {preds} {pshape} is end-to-end rows, with prototypes: an end-to-end "
                              "segmentation head is not supported")
        return _end2end_head(node, preds, shapes, producer, hw)
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


_SEARCH_LIMIT = 200  # nodes walked up from the end-to-end rows to the Concat of boxes and scores


def _end2end_head(node, preds: str, shapes, producer, hw: tuple[int, int]) -> Head:
    """The YOLO26 end-to-end head: ``node`` (a Concat along the last axis) makes ``[1, K, 6]`` rows from
    ``[1,K,4]`` boxes, ``[1,K,1]`` scores and ``[1,K,1]`` classes; above it the top-k selection reads a
    ``[1, 4+nc, N]`` Concat of pixel boxes and scores (found by walking up from the boxes)."""
    rows = shapes.get(preds) or []
    cols = [(shapes.get(i) or [None, None, None])[-1] for i in node.input]
    if len(cols) != 3 or cols[0] not in (4, None) or cols[1:] != [1, 1]:  # GatherElements: not always inferred
        raise LayoutError(f"output {preds} {rows} looks like end-to-end rows but its Concat's inputs have "
                          f"{cols} columns; expected [4, 1, 1] (x1,y1,x2,y2 / score / class)")
    seen, queue, pre = set(), [node.input[0]], None
    while queue and len(seen) < _SEARCH_LIMIT:
        t = queue.pop(0)
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        s = shapes.get(t) or []
        if n.op_type == "Concat" and _attr(n, "axis") in (1, -2) and len(s) == 3 and len(n.input) == 2:
            chans = [(shapes.get(i) or [None, None, None])[1] for i in n.input]
            if chans[0] == 4 and chans[1] and s[2]:
                pre = (n, s, chans)
                break
        queue.extend(n.input)
    if pre is None:
        raise LayoutError(f"output {preds} {rows} is end-to-end rows, but no [1, 4+nc, N] Concat of boxes and "
                          "scores was found above its top-k selection")
    pre_node, pre_shape, chans = pre
    return Head(preds, node.name, pre_node.input[0], pre_node.input[1], None, None, int(chans[1]), 0,
                int(pre_shape[2]), hw, end2end=True, rows=int(rows[1] or 0))


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
    if _fold_imgsz(model, head):
        return head.boxes
    import onnx
    from onnx import numpy_helper

    g = model.graph
    h, w = head.input_hw
    per_row = np.array([1 / w, 1 / h, 1 / w, 1 / h], np.float32).reshape(4, 1)
    name = "boxes_imgsz_scale"
    g.initializer.append(numpy_helper.from_array(per_row, name))
    out = f"{head.boxes}_normalized"
    g.node.append(onnx.helper.make_node("Mul", [head.boxes, name], [out], name="normalize_boxes"))
    return out


def _fold_imgsz(model, head: Head) -> bool:
    """Fold the division by the input size into the Mul by the stride constant that makes ``head.boxes``
    (see :func:`_normalize_boxes`); False when the boxes come from no such Mul."""
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
                return True
    return False


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
    if head.end2end:
        return _rebuild_end2end(model, head, "split")
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


def _onehot_selection(g, boxes: str, scores: str, head: Head, prefix: str) -> tuple[str, str, str, str]:
    """The end-to-end head's top-k selection, rebuilt from ``boxes`` ``[1,N,4]`` and ``scores`` ``[1,N,nc]``
    with one-hot matrix products instead of GatherElements: the K anchors of highest best-class score (TopK
    of ReduceMax), then the K (anchor, class) pairs of highest score among them (TopK of the flattened
    scores; anchor = j // nc, class = j % nc). Returns (boxes ``[1,K,4]``, scores ``[1,K,1]``, the classes
    as float ``[1,K,1]``, the class one-hot ``[1,K,nc]``): the export's rows, value for value (a product
    with a one-hot row is exact).

    Why: ai-edge-quantizer calibrates every tensor of the ops it handles, integer ones included, and the
    exported selection feeds integers to such ops (GATHER_ND, the int64 index arithmetic onnx2tf makes of
    GatherElements in MUL / ADD / CONCATENATION / RESHAPE; ONNX OneHot becomes ADD + FLOOR_MOD + ONE_HOT),
    which leaves int tensors without a range (21 for the export): it cannot be quantized. And onnx2tf makes
    an integer Div a float MUL by 1/nc, which would be quantized (anchor indices up to 1800 on an int8
    grid). Here integers pass only through ops it leaves alone (TOPK_V2, FLOOR_MOD, CAST, GREATER_EQUAL,
    LESS_EQUAL, LOGICAL_AND); a one-hot is ``lo <= index <= hi`` against constant bounds, cast to float,
    and each gather a BATCH_MATMUL with it (exact in int8: 0 and 1 are on the 1/255 grid of [0, 1])."""
    from onnx import TensorProto, helper, numpy_helper

    n, nc, k = head.anchors, head.num_classes, min(head.rows or 300, head.anchors)

    def const(name, value, dtype):
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    def node(op, ins, outs, **attrs):
        names = [f"{prefix}/{o}" for o in outs]
        g.node.append(helper.make_node(op, ins, names, name=f"{prefix}/{outs[0]}", **attrs))
        return names if len(names) > 1 else names[0]

    def onehot(index: str, depth: int, name: str, step: int = 1) -> str:
        """``[1,K]`` int64 indices -> ``[1,K,depth]`` float one-hot rows: row k is hot at ``index[k] // step``
        (``lo <= index <= hi`` against constant bounds: no division, no integer op the quantizer reads)."""
        lo = np.arange(depth).reshape(depth, 1) * step
        ge = node("GreaterOrEqual", [index, const(f"{name}_lo", lo, np.int64)], [f"{name}_ge"])  # [depth, K]
        le = node("LessOrEqual", [index, const(f"{name}_hi", lo + step - 1, np.int64)], [f"{name}_le"])
        hot = node("Cast", [node("And", [ge, le], [f"{name}_eq"])], [f"{name}_t"], to=TensorProto.FLOAT)
        return node("Reshape", [node("Transpose", [hot], [f"{name}_kd"], perm=[1, 0]),
                                const(f"{name}_shape", [1, k, depth], np.int64)], [name])

    best = node("ReduceMax", [scores], ["best_score"], axes=[-1], keepdims=0)  # [1,N]
    _, anchor = node("TopK", [best, const("k", [k], np.int64)], ["topk_value", "topk_anchor"], axis=1)
    pick = onehot(anchor, n, "anchor_onehot")  # [1,K,N]
    s_k = node("MatMul", [pick, scores], ["anchor_scores"])  # [1,K,nc]
    b_k = node("MatMul", [pick, boxes], ["anchor_boxes"])  # [1,K,4]
    flat = node("Reshape", [s_k, const("flat_shape", [1, k * nc], np.int64)], ["pair_scores"])
    value, pair = node("TopK", [flat, const("k2", [k], np.int64)], ["pair_value", "pair_index"], axis=1)
    cls = node("Mod", [pair, const("nc", [nc], np.int64)], ["pair_class"])  # FLOOR_MOD: left alone
    # anchor of pair j = j // nc as a one-hot; a Div would become CAST + MUL(1/nc) in float, and that MUL int8
    out_boxes = node("MatMul", [onehot(pair, k, "pair_onehot", step=nc), b_k], ["boxes"])  # [1,K,4]
    rows_1 = const("rows_1", [1, k, 1], np.int64)
    out_scores = node("Reshape", [value, rows_1], ["scores"])  # [1,K,1]
    cls_f = node("Reshape", [node("Cast", [cls], ["class_float"], to=TensorProto.FLOAT), rows_1], ["classes"])
    return out_boxes, out_scores, cls_f, onehot(cls, nc, "class_onehot")


def _rebuild_end2end(model, head: Head, layout: str):
    """``split`` / ``monolithic`` of an end-to-end head (see the module docstring): the export's selection
    replaced by :func:`_onehot_selection`; split reads the boxes ([0,1]) and scores before they are
    concatenated, monolithic reads them out of the export's ``[1, 4+nc, N]`` Concat, as exported."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    prefix = "qharness_select"
    k = min(head.rows or 300, head.anchors)
    if layout == "split":
        if not _fold_imgsz(m, head):  # no stride Mul to fold into: divide the boxes by the input size
            h, w = head.input_hw
            g.initializer.append(numpy_helper.from_array(
                np.array([1 / w, 1 / h, 1 / w, 1 / h], np.float32).reshape(4, 1), "boxes_imgsz_scale"))
            g.node.append(helper.make_node("Mul", [head.boxes, "boxes_imgsz_scale"], [f"{head.boxes}_normalized"],
                                           name="normalize_boxes"))
            src_boxes = f"{head.boxes}_normalized"
        else:
            src_boxes = head.boxes
        g.node.append(helper.make_node("Transpose", [src_boxes], [f"{prefix}/boxes_t"], perm=[0, 2, 1],
                                       name=f"{prefix}/boxes_t"))
        g.node.append(helper.make_node("Transpose", [head.scores], [f"{prefix}/scores_t"], perm=[0, 2, 1],
                                       name=f"{prefix}/scores_t"))
    else:
        pre = next(n for n in g.node if n.op_type == "Concat" and list(n.input[:2]) == [head.boxes, head.scores])
        g.node.append(helper.make_node("Transpose", [pre.output[0]], [f"{prefix}/preds_t"], perm=[0, 2, 1],
                                       name=f"{prefix}/preds_t"))
        g.initializer.append(numpy_helper.from_array(np.array([4, head.num_classes], np.int64), f"{prefix}/sizes"))
        g.node.append(helper.make_node("Split", [f"{prefix}/preds_t", f"{prefix}/sizes"],
                                       [f"{prefix}/boxes_t", f"{prefix}/scores_t"], axis=-1, name=f"{prefix}/split"))
    out_boxes, out_scores, out_classes, class_hot = _onehot_selection(g, f"{prefix}/boxes_t", f"{prefix}/scores_t",
                                                                       head, prefix)
    old_out = next(o for o in g.output if o.name == head.preds)
    keep = [n for n in g.node if head.preds not in n.output]  # the export's final Concat
    del g.node[:]
    g.node.extend(keep)
    del g.output[:]
    if layout == "split":
        # scores [1,K,nc]: each row's score at its class (0 elsewhere), so no integer output is needed
        g.node.append(helper.make_node("Mul", [class_hot, out_scores], ["scores"], name="end2end_scores"))
        _rename(g, out_boxes, "boxes")
        g.output.extend([helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, k, 4]),
                         helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, k, head.num_classes])])
        md = {"layout": "split", "boxes": "normalized", "outputs": "boxes,scores", "end2end": "True"}
    else:
        g.node.append(helper.make_node("Concat", [out_boxes, out_scores, out_classes], [head.preds], axis=-1,
                                       name=head.concat))
        g.output.append(old_out)
        md = {"layout": "monolithic", "boxes": "pixels", "outputs": "preds", "end2end": "True"}
    _drop_dead_nodes(g)
    _set_metadata(m, md)
    _drop_unused_initializers(g)
    onnx.checker.check_model(m)
    return m


def _drop_dead_nodes(g) -> None:
    """Remove nodes none of whose outputs reach a graph output (the export's selection, once rebuilt)."""
    needed = {o.name for o in g.output}
    keep = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)


def monolithic(model):
    """The export as it is, with its layout recorded in the metadata (an end-to-end head: its outputs as
    exported, the selection rebuilt so that it quantizes; see :func:`_onehot_selection`)."""
    import onnx

    head = find_head(model)
    if head.end2end:
        return _rebuild_end2end(model, head, "monolithic")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outputs = ["preds"] + (["protos"] if head.protos else [])
    _set_metadata(m, {"layout": "monolithic", "boxes": "pixels", "outputs": ",".join(outputs)})
    return m


def is_end2end(model) -> bool:
    """Whether a (rewritten) model's outputs are end-to-end detection rows (its head's top-k is in the graph)."""
    try:
        return find_head(prepare(model)).end2end
    except LayoutError:  # a split model: its metadata says
        md = _metadata(model)
        return md.get("layout") == "split" and md.get("end2end") == "True"


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
    End-to-end rows: ``[1, K, 6]`` (monolithic, when ``num_classes`` is known and not 2) is boxes / score /
    class columns; split, ``[1, K, 4]`` boxes and ``[1, K, nc]`` scores as for YOLOv8.
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
        elif channels(s) == 6 and not nm and num_classes is not None and num_classes != 2:
            # end-to-end rows [1, K, 6]: x1, y1, x2, y2, score, class (4 + nc would be 6 only for nc = 2)
            roles.append([("boxes", slice(0, 4)), ("scores", slice(4, 5)), ("classes", slice(5, 6))])
        else:
            c = channels(s)
            nc = num_classes if num_classes else c - 4 - nm
            parts = [("boxes", slice(0, 4)), ("scores", slice(4, 4 + nc))]
            if c > 4 + nc:
                parts.append(("coefs", slice(4 + nc, c)))
            roles.append(parts)
    return roles
