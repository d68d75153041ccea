"""YOLO26 detect heads in the quantizer: ``find_head`` on the one-to-many (YOLOv8-style, NMS) and the
end-to-end (one-to-one, top-k in the graph, ``[1, 300, 6]``) exports; the end-to-end split / monolithic
rewrites give the export's rows on real images; the validator's split end-to-end contract; the committed
float TFLite conversions are found without TensorFlow; and ``quantize`` + ``validate`` end to end on both
heads (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantizer import convert, layout
from quantizer.cli import main as quantize_main
from quantizer.common import sha256_file
from tests.conftest import MODELS
from validator.decode import ContractError, ContractKind, TensorSpec, decode, identify
from validator.decode.contract import BoxUnits

E2E = MODELS / "shapes-det-yolo26.onnx"
O2M = MODELS / "shapes-det-yolo26.one2many.onnx"
HW = (256, 256)


def run(model, x: np.ndarray) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x}), strict=True))


@pytest.fixture(scope="module")
def e2e():
    return onnx.load(str(E2E))


@pytest.fixture(scope="module")
def images(shapes_small) -> list[np.ndarray]:
    """Four shapes images letterboxed to 256 px as NCHW float inputs in [0, 1] (as ``validate`` makes them)."""
    from validator.data.preprocess import letterbox, load_image

    paths = sorted((shapes_small / "images").glob("*.jpg"))[:4]
    out = []
    for p in paths:
        canvas = letterbox(load_image(p), HW)[0]
        out.append((canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy())
    return out


# ---------------------------------------------------------------------------------------- find_head
def test_find_head_one_to_many_is_a_yolov8_head():
    head = layout.find_head(layout.prepare(onnx.load(str(O2M))))
    assert not head.end2end
    assert (head.num_classes, head.anchors, head.input_hw, head.coefs) == (6, 1344, (256, 256), None)
    assert head.boxes.endswith("Mul_2_output_0") and head.scores.endswith("Sigmoid_output_0")


def test_find_head_end_to_end(e2e):
    head = layout.find_head(layout.prepare(e2e))
    assert head.end2end and head.rows == 300
    assert (head.num_classes, head.anchors, head.preds) == (6, 1344, "output0")
    # the boxes and scores the top-k selection reads (the export's [1, 4+nc, N] Concat)
    assert head.boxes.endswith("Mul_2_output_0") and head.scores.endswith("Sigmoid_output_0")


def e2e_toy(cols=(4, 1, 1)):
    """A graph whose single [1, 5, sum(cols)] output is a Concat along the last axis (end-to-end-like)."""
    inits = [numpy_helper.from_array(np.ones((1, 5, c), np.float32), f"c{i}") for i, c in enumerate(cols)]
    nodes = [helper.make_node("Mul", ["images_mean", f"c{i}"], [f"p{i}"]) for i in range(len(cols))]
    nodes.insert(0, helper.make_node("ReduceMean", ["images"], ["images_mean"], keepdims=0))
    nodes.append(helper.make_node("Concat", [f"p{i}" for i in range(len(cols))], ["output0"], axis=-1))
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, sum(cols)])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_end_to_end_heads_that_are_not_understood_are_refused():
    with pytest.raises(layout.LayoutError, match=r"Concat's inputs have \[3, 3\] columns"):
        layout.find_head(e2e_toy((3, 3)))
    with pytest.raises(layout.LayoutError, match="no \\[1, 4\\+nc, N\\] Concat of boxes and scores"):
        layout.find_head(e2e_toy((4, 1, 1)))


def test_quantize_names_the_file_and_the_problem_in_one_line(tmp_path, capsys, shapes_small):
    bad = tmp_path / "rows.onnx"
    onnx.save(e2e_toy((4, 1, 1)), str(bad))
    rc = quantize_main(["--model", str(bad), "--calib", str(shapes_small), "--samples", "4", "--out",
                        str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(bad) in err[0] and "end-to-end rows" in err[0]
    assert "Traceback" not in err[0]


# ---------------------------------------------------------------------------------------- rewrites
def rows_of_split(out: dict[str, np.ndarray]) -> np.ndarray:
    """[K, 6] rows (pixels) from the split outputs: boxes [1,K,4] in [0,1], scores [1,K,nc] one-hot."""
    b, s = out["boxes"][0], out["scores"][0]
    return np.concatenate([b * 256.0, s.max(axis=1, keepdims=True), s.argmax(axis=1)[:, None]], axis=1)


def test_split_of_the_end_to_end_head_gives_the_export_rows(e2e, images):
    split = layout.apply(e2e, "split")
    assert [o.name for o in split.graph.output] == ["boxes", "scores"]
    md = layout.metadata_dict(split)
    assert (md["layout"], md["boxes"], md["outputs"], md["end2end"]) == ("split", "normalized", "boxes,scores", True)
    for x in images:
        want = run(e2e, x)["output0"][0]
        got = run(split, x)
        assert got["boxes"].shape == (1, 300, 4) and got["scores"].shape == (1, 300, 6)
        assert np.count_nonzero(got["scores"][0], axis=1).max() <= 1  # one class per row
        rows = rows_of_split(got)
        np.testing.assert_allclose(rows[:, :4], want[:, :4], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(rows[:, 4], want[:, 4], rtol=1e-6, atol=1e-7)
        positive = want[:, 4] > 0
        np.testing.assert_array_equal(rows[positive, 5], want[positive, 5])
        assert want[:, 4].max() > 0.25  # real detections, not an empty image


def test_monolithic_of_the_end_to_end_head_is_the_export_output(e2e, images):
    mono = layout.apply(e2e, "monolithic")
    assert layout.metadata_dict(mono)["layout"] == "monolithic"
    assert not any(n.op_type == "GatherElements" for n in mono.graph.node)  # the selection rebuilt
    for x in images[:2]:
        np.testing.assert_allclose(run(mono, x)["output0"], run(e2e, x)["output0"], rtol=1e-6, atol=1e-5)


def test_split_is_decoded_as_the_export_by_the_validator(e2e, images):
    split = layout.apply(e2e, "split")
    specs = [TensorSpec(o.name, tuple(d.dim_value for d in o.type.tensor_type.shape.dim), "float32")
             for o in split.graph.output]
    c = identify(specs, HW, num_classes=6)
    assert c.kind is ContractKind.END2END and c.roles == {"boxes": "boxes", "scores": "scores"}
    ref_c = identify([TensorSpec("output0", (1, 300, 6), "float32")], HW, num_classes=6)
    x = images[0]
    got = decode(c, run(split, x), HW, box_units="auto")
    want = decode(ref_c, run(e2e, x), HW, box_units="pixels")
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    np.testing.assert_array_equal(got.classes, want.classes)


def test_one_to_many_split_keeps_the_float_outputs(images):
    src = onnx.load(str(O2M))
    x = images[0]
    preds = run(src, x)["output0"]
    got = run(layout.apply(src, "split"), x)
    np.testing.assert_allclose(got["boxes"], preds[:, :4] / 256.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["scores"], preds[:, 4:], rtol=1e-5, atol=1e-7)


def test_output_roles_of_end_to_end_rows():
    mono = layout.output_roles([(1, 300, 6)], 6, "monolithic")
    assert [(r, s.start, s.stop) for r, s in mono[0]] == [("boxes", 0, 4), ("scores", 4, 5), ("classes", 5, 6)]
    split = layout.output_roles([(1, 300, 4), (1, 300, 6)], 6, "split")
    assert [r[0][0] for r in split] == ["boxes", "scores"]


# ---------------------------------------------------------------------------------------- contract
def spec(name, *shape, dtype="float32", scale=0.0):
    return TensorSpec(name, tuple(shape), dtype, scale)


def test_end2end_split_contract():
    c = identify([spec("s", 1, 300, 6, dtype="int8", scale=1 / 256), spec("b", 1, 300, 4, dtype="int8", scale=0.004)],
                 HW)
    assert c.kind is ContractKind.END2END and c.roles == {"boxes": "b", "scores": "s"}
    assert (c.num_classes, c.num_anchors, c.transposed) == (6, 300, True)
    assert c.box_format.value == "xyxy" and c.boxes is BoxUnits.AUTO
    # K an anchor count: YOLOv8's split head laid out [1, N, C], not end-to-end rows
    assert identify([spec("b", 1, 1344, 4), spec("s", 1, 1344, 6)], HW).kind is ContractKind.YOLO_SPLIT
    with pytest.raises(ContractError, match="cannot tell the boxes from the scores"):
        identify([spec("a", 1, 300, 4), spec("b", 1, 300, 4)], HW)
    with pytest.raises(ContractError, match="class count mismatch"):
        identify([spec("b", 1, 300, 4), spec("s", 1, 300, 6)], HW, num_classes=80)


def test_end2end_split_decode_and_units():
    from validator.decode import resolve_box_units

    c = identify([spec("b", 1, 5, 4), spec("s", 1, 5, 3)], HW)
    boxes = np.zeros((1, 5, 4), np.float32)
    scores = np.zeros((1, 5, 3), np.float32)
    boxes[0, 0], scores[0, 0, 2] = (10 / 256, 20 / 256, 30 / 256, 40 / 256), 0.5
    boxes[0, 3], scores[0, 3, 1] = (50 / 256, 60 / 256, 70 / 256, 80 / 256), 0.875
    outs = {"b": boxes, "s": scores}
    assert resolve_box_units(c, outs, HW) is BoxUnits.NORMALIZED
    det = decode(c, outs, HW, box_units="normalized", conf=0.001)
    assert det.classes.tolist() == [1, 2] and det.scores.tolist() == [0.875, 0.5]
    np.testing.assert_allclose(det.boxes, [[50, 60, 70, 80], [10, 20, 30, 40]], atol=1e-4)


# ---------------------------------------------------------------------------------------- conversion
def test_tied_rows_are_aligned_before_the_conversion_check():
    ref = {"output0": np.array([[[0, 0, 1, 1, 0.5, 1], [5, 5, 6, 6, 0.5, 2], [7, 7, 8, 8, 0.2, 0]]], np.float32)}
    got = {"output0": ref["output0"][:, [1, 0, 2]]}  # the two rows of equal score swapped
    aligned, moved = convert.align_rows(ref, got)
    assert moved == 2
    np.testing.assert_array_equal(aligned["output0"], ref["output0"])
    # split rows: the score is the row's largest class score
    boxes = np.array([[[0, 0, 1, 1], [5, 5, 6, 6], [7, 7, 8, 8]]], np.float32)
    scores = np.array([[[0, 0.5, 0], [0, 0, 0.5], [0.2, 0, 0]]], np.float32)
    ref = {"boxes": boxes, "scores": scores}
    aligned, moved = convert.align_rows(ref, {"boxes": boxes[:, [1, 0, 2]], "scores": scores[:, [1, 0, 2]]})
    assert moved == 2
    for k in ref:
        np.testing.assert_array_equal(aligned[k], ref[k])


@pytest.mark.parametrize("source,layout_name", [(E2E, "split"), (E2E, "monolithic"), (O2M, "split")])
def test_committed_float_tflite_is_found_by_sha256(source, layout_name):
    hit = convert.find(source, sha256_file(source), layout_name, None)
    assert hit is not None and hit.path.parent == MODELS
    rec = hit.record
    assert rec["layout"] == layout_name and rec["source"] == source.name
    assert max(v["max_rel_error"] for v in rec["check_vs_onnx"].values()) < convert.MAX_REL_ERROR


def test_committed_end_to_end_conversions_match_the_current_rewrite(e2e, images):
    """The records are keyed by source sha256, layout and LAYOUT_VERSION, not by the rewrite itself: a change
    to the end-to-end rewrite must come with new conversions (``python -m quantizer.convert convert``)."""
    from validator.runners import open_runner

    x = images[1]
    for name in ("split", "monolithic"):
        want = run(layout.apply(e2e, name), x)
        r = open_runner(MODELS / f"shapes-det-yolo26.{name}.float32.tflite")
        got = r.run(x.transpose(0, 2, 3, 1).copy() if r.input.layout == "NHWC" else x)
        by_shape = {v.shape: v for v in got.values()}
        aligned, _ = convert.align_rows(want, {k: by_shape[v.shape] for k, v in want.items()})
        for k, v in want.items():
            np.testing.assert_allclose(aligned[k], v, rtol=1e-4, atol=1e-3, err_msg=f"{name} {k}")


# ---------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def calib20(tmp_path_factory) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("calib-y26")
    generate(out, ShapesConfig(images=20, seed=11))
    return out


@pytest.fixture(scope="module")
def eval20(tmp_path_factory) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("eval-y26")
    generate(out, ShapesConfig(images=20, seed=3))
    return out


def quantize_and_validate(model: Path, outputs: str, calib: Path, data: Path, tmp: Path) -> dict:
    from validator.cli import main as validate_main

    out = tmp / "variants"
    rc = quantize_main(["--model", str(model), "--calib", str(calib), "--samples", "16", "--strategy", "minmax",
                        "--outputs", outputs, "--out", str(out), "--stats-dir", str(tmp / "stats"),
                        "--check-images", "4", "--quiet"])
    assert rc == 0
    report = tmp / "report"
    assert validate_main(["--float", str(model), "--manifest", str(out / "variants.json"), "--data", str(data),
                          "--out", str(report), "--quiet"]) == 0
    summary = json.loads((report / "summary.json").read_text())
    return {m["name"]: m for m in summary["models"]}


def bbox(m: dict) -> dict:
    return m["metrics"]["bbox"]


@pytest.mark.slow
def test_end_to_end_head_quantizes_and_validates(calib20, eval20, tmp_path):
    models = quantize_and_validate(E2E, "split,monolithic", calib20, eval20, tmp_path)
    ref = bbox(models["shapes-det-yolo26"])
    split = models["shapes-det-yolo26.split.minmax.n16.channel.int8"]
    mono = models["shapes-det-yolo26.monolithic.minmax.n16.channel.int8"]
    assert split["contract"].startswith("end2end") and "scores=" in split["contract"]  # split rows
    assert mono["contract"].startswith("end2end") and "preds=" in mono["contract"]
    assert ref["mAP50"] > 0.4  # the float model finds the shapes
    # split: boxes and scores with their own scales keep most of the float accuracy (generous bound)
    assert bbox(split)["mAP50"] >= ref["mAP50"] - 0.2
    assert bbox(split)["mAP50_95"] >= ref["mAP50_95"] - 0.25
    assert split["num_predictions"] > 0 and mono["num_predictions"] >= 0
    # monolithic: scores share one int8 scale with pixel boxes: never better than split
    assert bbox(mono)["mAP50_95"] <= bbox(split)["mAP50_95"] + 0.02


@pytest.mark.slow
def test_one_to_many_head_quantizes_and_validates(calib20, eval20, tmp_path):
    models = quantize_and_validate(O2M, "split", calib20, eval20, tmp_path)
    ref = bbox(models["shapes-det-yolo26.one2many"])
    split = models["shapes-det-yolo26.one2many.split.minmax.n16.channel.int8"]
    assert split["contract"].startswith("yolo_split")
    assert ref["mAP50"] > 0.4
    assert bbox(split)["mAP50"] >= ref["mAP50"] - 0.2
    assert bbox(split)["mAP50_95"] >= ref["mAP50_95"] - 0.25
