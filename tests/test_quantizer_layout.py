"""quantizer.layout: the split rewrite keeps the float outputs (boxes divided by the input size), the
monolithic layout is the export unchanged, Constant nodes become initializers, metadata says the layout,
and graphs that are not a YOLO head are refused with a reason."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantizer import layout
from tests.conftest import MODELS


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x}), strict=True))


@pytest.fixture(scope="module", params=["det", "seg"])
def fixture(request):
    return request.param, onnx.load(str(MODELS / f"shapes-{request.param}.onnx"))


def test_split_keeps_the_float_outputs(fixture):
    kind, src = fixture
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    ref = run(src, x)
    split = layout.apply(src, "split")
    got = run(split, x)
    preds = ref["output0"]
    want = {"boxes": preds[:, :4] / 256.0, "scores": preds[:, 4:10]}
    if kind == "seg":
        want.update({"mask_coefs": preds[:, 10:], "protos": ref["output1"]})
    assert list(got) == list(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    assert np.abs(got["boxes"][:, :2]).max() <= 1.5  # read as normalised by the validator (its NORMALIZED_MAX)


def test_split_metadata_tells_the_layout(fixture):
    kind, src = fixture
    md = layout.metadata_dict(layout.apply(src, "split"))
    assert md["layout"] == "split" and md["boxes"] == "normalized"
    assert md["outputs"] == ("boxes,scores" if kind == "det" else "boxes,scores,mask_coefs,protos")
    assert md["names"][0] == "circle" and md["imgsz"] == [256, 256]


def test_split_is_read_by_the_validator_without_flags(fixture, tmp_path):
    from validator.runners import open_runner

    kind, src = fixture
    p = tmp_path / "split.onnx"
    onnx.save(layout.apply(src, "split"), str(p))
    r = open_runner(p)
    assert r.metadata["names"][:2] == ["circle", "triangle"] and r.metadata["task"] == ("detect" if kind == "det"
                                                                                     else "segment")
    assert [o.shape for o in r.outputs][:2] == [(1, 4, 1344), (1, 6, 1344)]


def test_monolithic_is_the_export_as_it_is(fixture):
    _, src = fixture
    x = np.random.default_rng(1).random((1, 3, 256, 256), dtype=np.float32)
    mono = layout.apply(src, "monolithic")
    ref, got = run(src, x), run(mono, x)
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    assert layout.metadata_dict(mono)["layout"] == "monolithic"
    assert [n.op_type for n in mono.graph.node if n.op_type != "Constant"] == \
        [n.op_type for n in src.graph.node if n.op_type != "Constant"]


def test_prepare_turns_constant_nodes_into_initializers():
    src = onnx.load(str(MODELS / "shapes-det.onnx"))
    assert any(n.op_type == "Constant" for n in src.graph.node)
    prep = layout.prepare(src)
    assert not any(n.op_type == "Constant" for n in prep.graph.node)
    splits = [n for n in prep.graph.node if n.op_type == "Split"]
    inits = {i.name for i in prep.graph.initializer}
    assert splits and all(n.input[1] in inits for n in splits)  # what keeps onnx2tf off FlexSplitV
    onnx.checker.check_model(prep)


def toy_head(h: int, w: int, nc: int = 3, fold: bool = True):
    """A minimal YOLO-style graph: a strided conv to 4+nc channels per cell, boxes times a stride
    constant (or not), sigmoid scores, Concat along channels."""
    n = (h // 8) * (w // 8)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (4 + nc, 3, 8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 4 + nc, n], np.int64), "shape"),
             numpy_helper.from_array(np.array([4, nc], np.int64), "sizes"),
             numpy_helper.from_array(np.full((1, n), 8.0, np.float32), "stride")]
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], strides=[8, 8]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Split", ["r", "sizes"], ["b", "s"], axis=1),
             helper.make_node("Relu", ["b"], ["bp"])]
    if fold:
        nodes.append(helper.make_node("Mul", ["bp", "stride"], ["boxes_px"]))
    else:
        nodes.append(helper.make_node("Relu", ["bp"], ["boxes_px"]))
    nodes += [helper.make_node("Sigmoid", ["s"], ["cls"]),
              helper.make_node("Concat", ["boxes_px", "cls"], ["output0"], axis=1)]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
                          [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = m.metadata_props.add()
    p.key, p.value = "names", "{0: 'a', 1: 'b', 2: 'c'}"
    return m


@pytest.mark.parametrize("hw", [(64, 64), (64, 96)])
@pytest.mark.parametrize("fold", [True, False])
def test_boxes_are_divided_by_width_and_height(hw, fold):
    h, w = hw
    src = toy_head(h, w, fold=fold)
    x = np.random.default_rng(2).random((1, 3, h, w), dtype=np.float32)
    preds = run(src, x)["output0"]
    split = layout.apply(src, "split")
    got = run(split, x)
    scale = np.array([1 / w, 1 / h, 1 / w, 1 / h], np.float32).reshape(1, 4, 1)
    np.testing.assert_allclose(got["boxes"], preds[:, :4] * scale, rtol=1e-6)
    np.testing.assert_allclose(got["scores"], preds[:, 4:], rtol=1e-6)
    folded = not any(n.name == "normalize_boxes" for n in split.graph.node)
    assert folded == fold  # folded into the stride constant when there is one, else a Mul appended
    for i in split.graph.initializer:  # onnx2tf transposes 3-D constants: none made
        assert len(i.dims) != 3


def test_not_a_yolo_head_is_refused():
    m = toy_head(64, 64)
    m.graph.node[-1].op_type = "Sum"
    with pytest.raises(layout.LayoutError, match="not made by a Concat"):
        layout.apply(m, "split")
    with pytest.raises(layout.LayoutError, match="already split"):
        layout.apply(layout.apply(toy_head(64, 64), "split"), "split")
    with pytest.raises(ValueError, match="unknown layout"):
        layout.apply(toy_head(64, 64), "sideways")


def test_output_roles():
    split = layout.output_roles([(1, 4, 1344), (1, 6, 1344), (1, 32, 1344), (1, 64, 64, 32)], 6, "split")
    assert [r[0][0] for r in split] == ["boxes", "scores", "coefs", "protos"]
    mono = layout.output_roles([(1, 42, 1344), (1, 32, 64, 64)], 6, "monolithic")
    assert [(r, s.start, s.stop) for r, s in mono[0]] == [("boxes", 0, 4), ("scores", 4, 10), ("coefs", 10, 42)]
    assert layout.output_roles([(1, 1344, 10)], None, "monolithic")[0][1] == ("scores", slice(4, 10))
