"""TIDE error types: hand-sized cases checked by hand, and equality with tidecv 1.0.1 where it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from validator.diagnose.error_types import error_breakdown


def _gt(anns, n_images=1):
    images = [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 100, "height": 100} for i in range(n_images)]
    full = [{"id": k + 1, "iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a} for k, a in enumerate(anns)]
    return {"images": images, "annotations": full, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _det(cls, score, box, image=1):
    return {"image_id": image, "category_id": cls, "score": score, "bbox": box}


def test_each_error_type_by_hand():
    gt = _gt([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}])
    preds = [_det(1, 0.9, [0, 0, 10, 10]),  # true positive
             _det(1, 0.8, [0, 0, 10, 10]),  # duplicate of a taken ground truth
             _det(2, 0.7, [0, 0, 10, 10]),  # wrong class on a taken ground truth: Cls, suppressed when fixed
             _det(1, 0.6, [0, 0, 10, 4]),  # IoU 0.4: Loc
             _det(1, 0.5, [50, 50, 10, 10])]  # IoU 0: background
    b = error_breakdown(gt, preds)
    assert b.counts == {"Cls": 1, "Loc": 1, "Both": 0, "Dupe": 1, "Bkg": 1, "Miss": 0}
    # class a: the TP ranks first, AP 100; class b: one FP and no ground truth, AP 0 (TIDE counts it): mean 50
    assert b.ap == 50
    # fixing Cls removes class b's only detection (its ground truth was taken): class b is empty, mAP 100
    assert b.dap["Cls"] == 50
    assert b.dap["Dupe"] == b.dap["Bkg"] == b.dap["Loc"] == 0


def test_a_localisation_fix_takes_the_ground_truth_once():
    gt = _gt([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}])
    preds = [_det(1, 0.9, [0, 0, 10, 4]), _det(1, 0.8, [0, 0, 10, 3])]  # IoU 0.4 and 0.3: both Loc
    b = error_breakdown(gt, preds)
    assert b.counts["Loc"] == 2 and b.counts["Miss"] == 0  # the ground truth is usable by a fix: not missed
    assert b.ap == 0
    assert b.dap["Loc"] == 100  # the higher-scoring error becomes the TP, the other is dropped


def test_missed_and_crowd():
    gt = _gt([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
              {"image_id": 1, "category_id": 1, "bbox": [60, 60, 10, 10]},
              {"image_id": 1, "category_id": 1, "bbox": [30, 0, 30, 30], "iscrowd": 1}])
    preds = [_det(1, 0.9, [0, 0, 10, 10]), _det(1, 0.8, [32, 2, 10, 10])]  # a TP and one inside the crowd
    b = error_breakdown(gt, preds)
    assert b.counts["Miss"] == 1  # the box at 60,60
    # recall 0.5 at precision 1 (the crowd detection is ignored): 51 of the 101 recall points, 0..0.50
    assert b.ap == pytest.approx(51 / 101 * 100)
    assert b.dap["Miss"] == pytest.approx(100 - 51 / 101 * 100)  # the missed box dropped: recall 1


def test_equal_to_tidecv_on_fixture_predictions(tmp_path):
    tidecv = pytest.importorskip("tidecv")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "validator.datasets", "shapes", "--out", str(tmp_path / "d"), "--images",
                    "12", "--seed", "3"], check=True, capture_output=True)
    ann = tmp_path / "d" / "annotations.json"
    gt = json.loads(ann.read_text())
    import random

    rng = random.Random(5)
    preds = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(2):
            j = [rng.uniform(-0.3, 0.3) * w, rng.uniform(-0.3, 0.3) * h]
            preds.append({"image_id": a["image_id"], "category_id": rng.choice([a["category_id"]] * 3 + [1]),
                          "score": round(rng.random(), 3), "bbox": [x + j[0], y + j[1], w, h]})
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preds))
    for pos in (0.5, 0.75):
        t = tidecv.TIDE(pos_threshold=pos)
        run = t.evaluate(tidecv.datasets.COCO(str(ann)), tidecv.datasets.COCOResult(str(path)), mode=tidecv.TIDE.BOX)
        main = next(iter(t.get_main_errors().values()))
        mine = error_breakdown(gt, preds, pos_thresh=pos)
        assert mine.ap == run.ap
        assert {k: mine.dap[k] for k in main} == main


def test_validate_diagnose_on_the_fixture_pair(tmp_path):
    """--diagnose end to end: diagnostics.json with the error types, per-output error and lint of the upstream
    INT8 export, and the text block under the table."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    m = root / "tests" / "fixtures" / "models"
    subprocess.run([sys.executable, "-m", "validator.datasets", "shapes", "--out", str(tmp_path / "d"), "--images",
                    "20", "--seed", "3"], check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "validator.cli", "--float", str(m / "shapes-det.onnx"), "--int8",
                        str(m / "shapes-det.int8.tflite"), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                        "--diagnose", "--quiet", "--no-cache"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Diagnosis (--diagnose" in r.stdout and "error types at IoU 0.75" in r.stdout
    doc = json.loads((tmp_path / "o" / "diagnostics.json").read_text())
    (m0,) = doc["models"]
    assert {o["role"] for o in m0["outputs"]} == {"boxes", "scores"}
    lint = m0["scale_lint"]["outputs"][0]
    assert set(lint["roles"]) == {"boxes", "scores"} and lint["score_levels"] >= 64
    assert m0["op_audit"]["fully_integer"]
    assert set(m0["error_types"]["bbox"]["delta"]["0.75"]["dap"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
