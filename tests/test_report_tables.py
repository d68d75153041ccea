"""report/tables.py: the seed's table layout, two-decimal percentages, Δ rows in points."""

from __future__ import annotations

from validator.report import tables


def _summary(seg: bool):
    def metrics(a, b):
        m = {"bbox": {"mAP50": a, "mAP50_95": b, "mean_recall": 0.4664,
                      "per_class": {"1": {"name": "x", "n_gt": 1, "AP50": a, "AP50_95": b}}}}
        if seg:
            m["segm"] = {"mAP50": a - 0.01, "mAP50_95": b - 0.01, "mean_recall": 0.4,
                         "per_class": {"1": {"name": "x", "n_gt": 1, "AP50": a - 0.01, "AP50_95": b - 0.01}}}
        return m

    models = [{"name": "f", "role": "float", "path": "m.onnx", "metrics": metrics(0.502, 0.3575)},
              {"name": "q", "role": "int8", "path": "m.tflite", "metrics": metrics(0.4751, 0.3203)}]
    per_class = [{"category_id": 1, "name": "x", "dAP50": -2.69, "dAP50_95": -3.72}]
    dm = {"bbox": {"mAP50": -2.69, "mAP50_95": -3.72, "mean_recall": 0.0, "per_class": per_class}}
    if seg:
        dm["segm"] = {"mAP50": -2.69, "mAP50_95": -3.72, "per_class": per_class}
    return {"models": models, "deltas": [{"float": "f", "int8": "q", "metrics": dm}]}


def test_detection_table_matches_seed_layout():
    md = tables.markdown(_summary(False)).splitlines()
    assert md[0] == "| Model | mAP@0.5 | mAP@0.5-0.95 | Mean Recall |"
    assert md[2] == "| ONNX float32 (f) | 50.20% | 35.75% | 46.64% |"
    assert md[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 46.64% |"
    assert md[4] == "| Δ q − f | -2.69 pts | -3.72 pts | +0.00 pts |"


def test_segmentation_table_has_det_and_mask_columns():
    md = tables.markdown(_summary(True)).splitlines()
    assert md[0] == "| Model | Det mAP@0.5 | Det mAP@0.5-0.95 | Mask mAP@0.5 | Mask mAP@0.5-0.95 |"
    assert md[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 46.51% | 31.03% |"


def test_csv_and_per_class():
    csv = tables.csv_table(_summary(False)).splitlines()
    assert csv[0] == "Model,mAP@0.5,mAP@0.5-0.95,Mean Recall"
    pc = tables.per_class_csv(_summary(False)).splitlines()
    assert pc[0] == "iou_type,category_id,name,n_gt,f AP50,f AP50_95,q AP50,q AP50_95,Δ q AP50,Δ q AP50_95"
    assert pc[1] == "bbox,1,x,1,50.20,35.75,47.51,32.03,-2.69,-3.72"
