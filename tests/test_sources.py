"""Rows of the table: role checks and labels from what each model is, results files made elsewhere
(`--predictions`), external delegates (`--delegate`), and det beside seg models in one run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS
from tests.tiny_models import onnx_model, tflite_model
from validator.cli import main

DET, DET8 = MODELS / "shapes-det.onnx", MODELS / "shapes-det.int8.tflite"
SEG, SEG8 = MODELS / "shapes-seg.onnx", MODELS / "shapes-seg.int8.tflite"


def _err(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def _run(capsys, *args) -> int:
    code = main([str(a) for a in args] + ["--quiet"])
    return code


# ------------------------------------------------------------------------------------------ roles
def test_float_flag_given_an_int8_model_exits_2_naming_what_the_tensors_show(shapes_small, tmp_path, capsys):
    assert _run(capsys, "--float", DET8, "--data", shapes_small, "--out", tmp_path / "o") == 2
    line = _err(capsys)
    assert str(DET8) in line and "given as --float" in line and "TFLite INT8" in line
    assert "activation tensors are int8" in line
    assert not (tmp_path / "o").exists()


def test_int8_flag_given_a_float_model_exits_2(shapes_small, tmp_path, capsys):
    assert _run(capsys, "--int8", DET, "--data", shapes_small, "--out", tmp_path / "o") == 2
    line = _err(capsys)
    assert str(DET) in line and "given as --int8" in line and "ONNX float32" in line


def _qdq_onnx(path: Path, const: np.ndarray) -> Path:
    """A tiny ONNX model with QuantizeLinear -> DequantizeLinear on its input (a QDQ model's pattern)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    onnx_model(path, [1, 3, 64, 64], outputs={"output0": const})
    m = onnx.load(str(path))
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "in_scale"),
                          numpy_helper.from_array(np.array(0, np.uint8), "in_zp")])
    q = helper.make_node("QuantizeLinear", ["images", "in_scale", "in_zp"], ["images_q"])
    dq = helper.make_node("DequantizeLinear", ["images_q", "in_scale", "in_zp"], ["images_dq"])
    for n in g.node:
        n.input[:] = ["images_dq" if i == "images" else i for i in n.input]
    nodes = [q, dq, *g.node]
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    g.value_info.append(helper.make_tensor_value_info("images_q", TensorProto.UINT8, [1, 3, 64, 64]))
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())
    return path


def test_labels_come_from_the_model_not_the_flag(shapes_small, tmp_path):
    const = np.zeros((1, 10, 84), np.float32)
    qdq = _qdq_onnx(tmp_path / "qdq.onnx", const)
    fp16 = tflite_model(tmp_path / "half.tflite", [1, 64, 64, 3], outputs={"output0": (const, "float32", None)},
                        gain=1.0, fp16_gain=True)
    out = tmp_path / "o"
    assert main(["--model", str(DET), "--model", str(qdq), "--model", str(fp16), "--model", str(DET8),
                 "--data", str(shapes_small), "--out", str(out), "--limit", "2", "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [(m["label"], m["role"]) for m in s["models"]] == [
        ("ONNX float32 (shapes-det)", "float"), ("ONNX INT8 (QDQ) (qdq)", "int8"),
        ("TFLite float16 (half)", "float"), ("TFLite INT8 (shapes-det.int8)", "int8")]
    assert [(d["reference"], d["model"]) for d in s["deltas"]] == [
        ("shapes-det", "qdq"), ("shapes-det", "half"), ("shapes-det", "shapes-det.int8")]
    assert s["models"][1]["precision"]["evidence"] == "1 QuantizeLinear and 1 DequantizeLinear nodes"
    table = (out / "table.md").read_text()
    assert "| ONNX INT8 (QDQ) (qdq) |" in table and "| TFLite float16 (half) |" in table


def test_float_flag_given_a_qdq_onnx_exits_2(shapes_small, tmp_path, capsys):
    qdq = _qdq_onnx(tmp_path / "qdq.onnx", np.zeros((1, 10, 84), np.float32))
    assert _run(capsys, "--float", qdq, "--data", shapes_small, "--out", tmp_path / "o") == 2
    assert "ONNX INT8 (QDQ)" in _err(capsys)


# ------------------------------------------------------------------------------------------ mixed tasks
@pytest.mark.parametrize("ref,other", [(DET, SEG8), (SEG, DET8)])
def test_det_beside_seg_compares_boxes_and_masks_where_present(shapes_small, tmp_path, ref, other):
    out = tmp_path / "o"
    code = main(["--float", str(ref), "--int8", str(other), "--data", str(shapes_small), "--out", str(out),
                 "--limit", "4", "--no-cache", "--quiet"])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    seg_name = "shapes-seg" if ref == SEG else "shapes-seg.int8"
    for m in s["models"]:
        assert sorted(m["metrics"]) == (["bbox", "segm"] if m["name"] == seg_name else ["bbox"])
    (d,) = s["deltas"]
    assert sorted(k for k in d["metrics"]) == ["bbox"]
    rows = [ln for ln in (out / "table.md").read_text().splitlines() if ln.startswith("| ")]
    assert "Mask mAP@0.5" in rows[0]
    det_row = next(r for r in rows if "shapes-det" in r and not r.startswith("| Δ"))
    assert det_row.endswith("| n/a | n/a |")
    assert rows[-1].startswith("| Δ") and rows[-1].endswith("| n/a | n/a |")
    assert "segm" in (out / "per_class.csv").read_text()


# ------------------------------------------------------------------------------------------ results files
@pytest.fixture(scope="module")
def det_run(shapes_small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det-run")
    assert main(["--model", str(DET), "--data", str(shapes_small), "--out", str(out), "--limit", "8",
                 "--no-cache", "--quiet"]) == 0
    return out


def test_results_file_scores_like_the_model_that_made_it(det_run, shapes_small, tmp_path):
    """Our own predictions fed back as a device results file: the same numbers, a Δ row of zeros."""
    preds = det_run / "predictions" / "shapes-det.json"
    out = tmp_path / "o"
    assert main(["--float", str(DET), "--predictions", f"board={preds}", "--data", str(shapes_small),
                 "--out", str(out), "--limit", "8", "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    model, board = s["models"]
    assert board["label"] == "Predictions (board)" and board["kind"] == "predictions"
    for k in ("mAP50", "mAP50_95", "AR100", "mean_recall"):
        assert board["metrics"]["bbox"][k] == model["metrics"]["bbox"][k]
    assert all(v in (0, None) for k, v in s["deltas"][0]["metrics"]["bbox"].items() if k != "per_class"
               and k != "mean_recall_paired_conf")
    assert (out / "predictions" / "board.json").read_bytes() == (out / "predictions" / "shapes-det.json").read_bytes()


def _pycocotools_stats(ann: Path, dets: list[dict], iou_type: str) -> list[float]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


def test_results_file_with_polygons_rle_and_no_bbox_equals_pycocotools(shapes_small, tmp_path):
    """Masks as polygons, as RLE and without a bbox: scored like pycocotools scores the same detections
    (given as RLE, since its loadRes cannot take polygons), bbox derived from the mask as loadRes does."""
    from pycocotools import mask as mask_utils

    doc = json.loads((shapes_small / "annotations.json").read_text())
    ids = sorted(im["id"] for im in doc["images"])[:6]
    size = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
    ours, ref = [], []
    rng = np.random.default_rng(0)
    for k, a in enumerate(x for x in doc["annotations"] if x["image_id"] in ids and not x["iscrowd"]):
        h, w = size[a["image_id"]]
        poly = [[v + float(rng.normal(0, 1.5)) for v in part] for part in a["segmentation"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(poly, h, w))
        score = round(float(rng.uniform(0.2, 1.0)), 5)
        rle_json = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        form = k % 3
        d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": score}
        if form == 0:
            d["segmentation"] = poly
            d["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        elif form == 1:
            d["segmentation"] = rle_json
            d["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        else:
            d["segmentation"] = rle_json  # no bbox
        ours.append(d)
        ref.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": score,
                    "segmentation": dict(rle_json)})
    ref = sorted(ref, key=lambda p: (p["image_id"], -p["score"]))  # the order validate evaluates in
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(ours))
    sub = tmp_path / "sub.json"
    sub_doc = {**doc, "images": [im for im in doc["images"] if im["id"] in ids],
               "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}
    sub.write_text(json.dumps(sub_doc))
    out = tmp_path / "o"
    assert main(["--predictions", f"dev={f}", "--data", str(sub), "--images", str(shapes_small / "images"),
                 "--out", str(out), "--no-cache", "--quiet", "--backend", "pycocotools"]) == 0
    s = json.loads((out / "summary.json").read_text())
    m = s["models"][0]["metrics"]
    segm = _pycocotools_stats(sub, ref, "segm")
    bbox = _pycocotools_stats(sub, [{**r, "bbox": [float(v) for v in mask_utils.toBbox(
        {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()})]} for r in ref], "bbox")
    assert m["segm"]["mAP50_95"] == pytest.approx(segm[0], abs=1e-12)
    assert m["segm"]["mAP50"] == pytest.approx(segm[1], abs=1e-12)
    assert m["bbox"]["mAP50_95"] == pytest.approx(bbox[0], abs=1e-12)
    assert m["segm"]["AR100"] == pytest.approx(segm[8], abs=1e-12)


@pytest.mark.parametrize("content,needle", [
    ('{"not": "a list"}', "expected a JSON list"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "lacks one of image_id, category_id, score"),
    ('[{"image_id": 999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]', "image_id 999999"),
    ('[{"image_id": 1, "category_id": 424242, "bbox": [0, 0, 1, 1], "score": 0.5}]', "424242"),
    ('[{"image_id": 1, "category_id": 1, "score": 0.5}]', "neither bbox nor segmentation"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5', "invalid JSON"),
])
def test_bad_results_file_exits_2(shapes_small, tmp_path, capsys, content, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    doc = json.loads((shapes_small / "annotations.json").read_text())
    content = content.replace('"image_id": 1,', f'"image_id": {doc["images"][0]["id"]},')
    content = content.replace('"category_id": 1,', f'"category_id": {doc["categories"][0]["id"]},')
    f.write_text(content)
    assert _run(capsys, "--predictions", f"x={f}", "--data", shapes_small, "--out", tmp_path / "o") == 2
    line = _err(capsys)
    assert str(f) in line and needle in line


def test_results_file_unknown_categories_dropped_and_noted(det_run, shapes_small, tmp_path):
    preds = json.loads((det_run / "predictions" / "shapes-det.json").read_text())
    preds.append({**preds[0], "category_id": 777})
    f = tmp_path / "p.json"
    f.write_text(json.dumps(preds))
    out = tmp_path / "o"
    assert main(["--predictions", f"dev={f}", "--data", str(shapes_small), "--out", str(out), "--limit", "8",
                 "--no-cache", "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert any("1 detections of category ids not in the dataset dropped" in n for n in s["models"][0]["notes"])
    assert "dev: 1 detections of category ids" in (out / "table.md").read_text()


# ------------------------------------------------------------------------------------------ delegates
def test_missing_delegate_library_exits_2(shapes_small, tmp_path, capsys):
    lib = tmp_path / "libnope.so"
    assert _run(capsys, "--model", DET8, "--delegate", f"{lib}:a=1", "--data", shapes_small,
                "--out", tmp_path / "o") == 2
    line = _err(capsys)
    assert str(lib) in line and "cannot load delegate library" in line


def test_library_that_is_not_a_delegate_exits_2(shapes_small, tmp_path, capsys):
    import ctypes.util

    libm = ctypes.util.find_library("m") or "libm.so.6"
    assert _run(capsys, "--model", DET8, "--delegate", libm, "--data", shapes_small, "--out", tmp_path / "o") == 2
    assert "not a TFLite external delegate" in _err(capsys)


NOOP_DELEGATE_C = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* TfLiteDelegate as tensorflow/lite/core/c/common.h lays it out. Prepare claims no nodes: a no-op. */
typedef struct TfLiteDelegate {
  void *data_;
  int (*Prepare)(void *context, struct TfLiteDelegate *delegate);
  void *CopyFromBufferHandle, *CopyToBufferHandle, *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
} TfLiteDelegate;
static int prepare(void *context, TfLiteDelegate *d) { (void)context; (void)d; return 0; }
static TfLiteDelegate the_delegate;
TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*err)(const char *)) {
  (void)err;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "log") == 0) {
      FILE *f = fopen(values[i], "w");
      for (size_t j = 0; j < n; j++) fprintf(f, "%s=%s\n", keys[j], values[j]);
      fclose(f);
    }
  }
  for (size_t i = 0; i < n; i++) if (strcmp(keys[i], "fail") == 0) return NULL;
  memset(&the_delegate, 0, sizeof the_delegate);
  the_delegate.Prepare = prepare;
  return &the_delegate;
}
void tflite_plugin_destroy_delegate(TfLiteDelegate *d) { (void)d; }
"""


@pytest.fixture(scope="module")
def noop_delegate(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test delegate")
    d = tmp_path_factory.mktemp("delegate")
    (d / "noop.c").write_text(NOOP_DELEGATE_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(d / "libnoop_delegate.so"), str(d / "noop.c")],
                   check=True, capture_output=True)
    return d / "libnoop_delegate.so"


def test_external_delegate_gets_its_options_and_runs_the_model(noop_delegate, shapes_small, tmp_path):
    """A real external delegate (a no-op one, built here) is loaded with the options as given and the run
    goes through it; the numbers equal a run without it (the delegate claims no nodes)."""
    log = tmp_path / "delegate.log"
    out, plain = tmp_path / "o", tmp_path / "p"
    r = subprocess.run([sys.executable, "-m", "validator.cli", "--model", str(DET8), "--data", str(shapes_small),
                        "--delegate", f"{noop_delegate}:log={log},cache_dir=/tmp/x", "--out", str(out),
                        "--limit", "2", "--no-cache", "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == [f"log={log}", "cache_dir=/tmp/x"]
    assert main(["--model", str(DET8), "--data", str(shapes_small), "--out", str(plain), "--limit", "2",
                 "--no-cache", "--quiet"]) == 0
    s, p = (json.loads((d / "summary.json").read_text()) for d in (out, plain))
    assert s["models"][0]["delegate"] == f"{noop_delegate}:log={log},cache_dir=/tmp/x"
    assert s["models"][0]["metrics"] == p["models"][0]["metrics"]


def test_delegate_that_fails_to_start_exits_2(noop_delegate, shapes_small, tmp_path):
    r = subprocess.run([sys.executable, "-m", "validator.cli", "--model", str(DET8), "--data", str(shapes_small),
                        "--delegate", f"{noop_delegate}:fail=1", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(noop_delegate) in lines[0] and "delegate failed to start" in lines[0], r.stderr
