"""The committed fixture models load in onnxruntime and LiteRT with the shapes/dtypes recorded when
they were made (tests/fixtures/models/fixtures.json, written by make_fixtures.py), and the files are
the ones recorded (sha256)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.conftest import MODELS

RECORD = json.loads((MODELS / "fixtures.json").read_text())
FILES = {name: info for m in RECORD["models"].values() for name, info in m["files"].items()}
EXPECTED = ["shapes-det.int8.tflite", "shapes-det.onnx", "shapes-seg.int8.tflite", "shapes-seg.onnx"]
# The YOLO26n detector (models["detect-yolo26"]): end-to-end and one-to-many ONNX, float and INT8 LiteRT.
YOLO26 = ["shapes-det-yolo26.float32.tflite", "shapes-det-yolo26.int8.tflite", "shapes-det-yolo26.one2many.onnx",
          "shapes-det-yolo26.onnx"]
ALL = EXPECTED + YOLO26


def test_all_fixtures_recorded_and_small():
    assert sorted(FILES) == sorted(ALL)
    assert sum((MODELS / n).stat().st_size for n in EXPECTED) < 60 * 2**20
    assert sum((MODELS / n).stat().st_size for n in YOLO26) < 35 * 2**20


@pytest.mark.parametrize("name", ALL)
def test_file_is_the_recorded_one(name):
    assert hashlib.sha256((MODELS / name).read_bytes()).hexdigest() == FILES[name]["sha256"]


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith(".onnx")])
def test_onnx_loads_with_recorded_io(name):
    import onnxruntime as ort

    s = ort.InferenceSession(str(MODELS / name), providers=["CPUExecutionProvider"])
    rec = FILES[name]
    assert [(t.name, list(t.shape), t.type) for t in s.get_inputs()] == [
        (t["name"], t["shape"], t["dtype"]) for t in rec["inputs"]]
    assert [(t.name, list(t.shape), t.type) for t in s.get_outputs()] == [
        (t["name"], t["shape"], t["dtype"]) for t in rec["outputs"]]
    x = np.full(rec["inputs"][0]["shape"], 0.5, np.float32)
    outs = s.run(None, {rec["inputs"][0]["name"]: x})
    assert all(np.isfinite(o).all() for o in outs)
    if "seg" in name:  # the seg model carries its prototype masks as a 4-D output
        assert len(outs) == 2 and outs[1].ndim == 4 and outs[1].shape[1] == 32


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith(".tflite")])
def test_tflite_loads_with_recorded_io_and_holds_int8_tensors(name):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(MODELS / name))
    it.allocate_tensors()
    rec = FILES[name]
    got_in = [(d["name"], [int(v) for v in d["shape"]], d["dtype"].__name__) for d in it.get_input_details()]
    got_out = [(d["name"], [int(v) for v in d["shape"]], d["dtype"].__name__) for d in it.get_output_details()]
    assert got_in == [(t["name"], t["shape"], t["dtype"]) for t in rec["inputs"]]
    assert got_out == [(t["name"], t["shape"], t["dtype"]) for t in rec["outputs"]]
    dtypes = [d["dtype"].__name__ for d in it.get_tensor_details()]
    n_q = sum(dt in ("int8", "uint8") for dt in dtypes)
    if "float32" in name:
        assert n_q == 0, f"expected a float graph, got {n_q} int8/uint8 tensors"
    else:
        assert n_q > 0.5 * len(dtypes), f"expected a mostly int8 graph, got {n_q}/{len(dtypes)} int8/uint8 tensors"
    x = np.full(rec["inputs"][0]["shape"], 0.5, np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    for d in it.get_output_details():
        assert np.isfinite(it.get_tensor(d["index"])).all()


def test_recorded_training_metrics_meet_the_bar():
    """mAP@0.5 >= 0.7 on the held-out val split as the trainer reports it (its best epoch's validation);
    the standalone val figures are recorded beside it (tests/fixtures/README.md)."""
    for task in ("detect", "segment"):
        m = RECORD["models"][task]
        assert m["trainer_best_epoch"]["box_mAP50"] >= 0.7, task
        assert m["trainer_metrics_on_val"]["box_mAP50"] > 0.5, task
    assert RECORD["models"]["segment"]["trainer_metrics_on_val"]["mask_mAP50"] > 0.5


def test_yolo26_heads_and_record():
    """shapes-det-yolo26.onnx is the end-to-end head ([1, 300, 6]); the others are one-to-many ([1, 4+6, 1344]),
    the INT8 LiteRT one because Ultralytics' INT8 export drops the end-to-end head; the trainer's bar is met."""
    m = RECORD["models"]["detect-yolo26"]
    assert m["trainer_best_epoch"]["box_mAP50"] >= 0.7
    shapes = {n: m["files"][n]["outputs"][0]["shape"] for n in YOLO26}
    assert shapes.pop("shapes-det-yolo26.onnx") == [1, 300, 6]
    assert all(s == [1, 10, 1344] for s in shapes.values()), shapes
    for n in YOLO26:
        preds = json.loads((MODELS / "yolo26-ultralytics-predictions" / f"{n}.json").read_text())
        assert len(preds) == 30 and all(len(r) == 6 for rows in preds.values() for r in rows)
