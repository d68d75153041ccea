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

    models = [{"name": "f", "role": "float", "label": "ONNX float32 (f)", "metrics": metrics(0.502, 0.3575)},
              {"name": "q", "role": "int8", "label": "TFLite INT8 (q)", "metrics": metrics(0.4751, 0.3203)}]
    per_class = [{"category_id": 1, "name": "x", "dAP50": -2.69, "dAP50_95": -3.72}]
    dm = {"bbox": {"mAP50": -2.69, "mAP50_95": -3.72, "mean_recall": 0.0, "per_class": per_class}}
    if seg:
        dm["segm"] = {"mAP50": -2.69, "mAP50_95": -3.72, "per_class": per_class}
    return {"qharness": "0.1.0", "metric": "coco", "dataset": {"images": 5000, "annotations_count": 36781},
            "models": models, "deltas": [{"reference": "f", "model": "q", "metrics": dm}]}


def _table(summary) -> list[str]:
    return [ln for ln in tables.markdown(summary).splitlines() if ln.startswith("|")]


def test_detection_table_matches_seed_layout():
    md = _table(_summary(False))
    assert md[0] == "| Model | mAP@0.5 | mAP@0.5-0.95 | Mean Recall |"
    assert md[2] == "| ONNX float32 (f) | 50.20% | 35.75% | 46.64% |"
    assert md[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 46.64% |"
    assert md[4] == "| Δ q − f | -2.69 pts | -3.72 pts | +0.00 pts |"


def test_segmentation_table_has_det_and_mask_columns():
    md = _table(_summary(True))
    assert md[0] == "| Model | Det mAP@0.5 | Det mAP@0.5-0.95 | Mask mAP@0.5 | Mask mAP@0.5-0.95 |"
    assert md[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 46.51% | 31.03% |"


def test_csv_and_per_class():
    csv = tables.csv_table(_summary(False)).splitlines()
    assert csv[0] == ("row,name,label,metric,mAP@0.5 (% ; Δ rows: pts),mAP@0.5-0.95 (% ; Δ rows: pts),"
                      "Mean Recall (% ; Δ rows: pts)")
    assert csv[1] == "model,f,ONNX float32 (f),coco,50.20,35.75,46.64"
    assert csv[3] == "delta,q,Δ q − f,coco,-2.69,-3.72,0.00"
    assert not any(c in line for line in csv[1:] for c in ("%", "pts"))  # numbers only
    pc = tables.per_class_csv(_summary(False)).splitlines()
    assert pc[0] == ("iou_type,category_id,name,n_gt,f AP50 (%),f AP50_95 (%),q AP50 (%),q AP50_95 (%),"
                     "Δ q AP50 (pts),Δ q AP50_95 (pts)")
    assert pc[1] == "bbox,1,x,1,50.20,35.75,47.51,32.03,-2.69,-3.72"


def test_title_names_the_metric():
    s = _summary(False)
    assert tables.markdown(s).splitlines()[0] == (
        "**qharness 0.1.0 · metric: COCO (pycocotools-exact: IoU 0.50:0.95, 101-point AP, maxDets 100, crowds "
        "ignored) · 5000 images, 36781 annotations**")
    s["metric"] = "compat"
    assert "metric: compat (Ultralytics 8.4 val-style reading, NOT COCO" in tables.markdown(s).splitlines()[0]


def test_mixed_det_and_seg_models_share_one_table():
    """A det model beside a seg model: the seg layout, n/a under the det model's mask columns, the Δ row
    compares boxes only (what both have)."""
    s = _summary(True)
    del s["models"][1]["metrics"]["segm"]
    del s["deltas"][0]["metrics"]["segm"]
    md = _table(s)
    assert md[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | n/a | n/a |"
    assert md[4] == "| Δ q − f | -2.69 pts | -3.72 pts | n/a | n/a |"
    pc = tables.per_class_csv(s).splitlines()
    assert pc[-1] == "segm,1,x,1,49.20,34.75,,,,"


def test_a_row_whose_own_optimum_recall_is_not_the_paired_one_says_so():
    """Seen: a variant row read Mean Recall 73% beside the float's 60% while its paired Δ was -60.42 pts; the
    row now carries the paired reading where the two differ by a point or more."""
    s = _summary(False)
    q = s["models"][1]
    q["metrics"]["bbox"].update(mean_recall=0.73, f1_conf=0.001)
    q["at_reference_confidence"] = {"bbox": {"conf": 0.342, "mean_recall": 0.0}}
    assert _table(s)[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 73.00% at own conf 0.001 (0.00% at the " \
                           "reference's 0.342) |"
    q["at_reference_confidence"]["bbox"]["mean_recall"] = 0.7255  # within a point: one number
    assert _table(s)[3] == "| TFLite INT8 (q) | 47.51% | 32.03% | 73.00% |"
