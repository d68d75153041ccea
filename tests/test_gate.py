"""The regression gate on hand-made summaries: values, limits, skips, CIs from given resamples, JUnit, markdown.

Every expected number is worked out by hand from the dicts below (fractions in the models, points in the
deltas, as summary.json stores them).
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from validator.errors import InputError
from validator.gate import (
    Bootstrap,
    evaluate_gate,
    gate_from_dict,
    junit_xml,
    load_gate,
    load_summary,
    markdown,
    percentile_ci,
)

ROOT = Path(__file__).resolve().parents[1]

REF_BOX = {"mAP50_95": 0.50, "mAP50": 0.70, "mAP75": 0.55, "AR100": 0.65, "AP_small": 0.20, "AP_medium": 0.55,
           "AP_large": 0.70, "mean_recall": 0.60}
INT8_BOX = {"mAP50_95": 0.46, "mAP50": 0.69, "mAP75": 0.52, "AR100": 0.62, "AP_small": None, "AP_medium": 0.50,
            "AP_large": 0.68, "mean_recall": 0.61}  # own-optimum recall: +1 pt; the paired delta says -0.5
REF_CLASSES = {"1": ("circle", 100, 0.80, 0.60), "2": ("triangle", 10, 0.50, 0.30), "3": ("square", 60, 0.70, 0.50)}
INT8_CLASSES = {"1": ("circle", 100, 0.78, 0.55), "2": ("triangle", 10, 0.30, 0.10), "3": ("square", 60, 0.68, 0.42)}
# AP50_95 drops: circle 5, triangle 20 (10 instances), square 8; AP50 drops: 2, 20, 2


def per_class(rows):
    return {cid: {"name": n, "n_gt": g, "AP50": a, "AP50_95": b} for cid, (n, g, a, b) in rows.items()}


def delta_rows(ref, mod):
    out = []
    for cid in ref:
        n, g, a, b = ref[cid]
        _, _, c, d = mod[cid]
        out.append({"category_id": int(cid), "name": n, "n_gt": g, "dAP50": round(100 * (c - a), 4),
                    "dAP50_95": round(100 * (d - b), 4)})
    return out


def make_summary(int8_box=None, *, dataset="d" * 64, seg=False) -> dict:
    int8_box = dict(INT8_BOX if int8_box is None else int8_box)
    ref = {"name": "float", "role": "float", "label": "ONNX float32 (float)", "sha256": "a" * 64,
           "metrics": {"bbox": {**REF_BOX, "per_class": per_class(REF_CLASSES)}}}
    mod = {"name": "int8", "role": "int8", "label": "TFLite INT8 (int8)", "sha256": "b" * 64,
           "metrics": {"bbox": {**int8_box, "per_class": per_class(INT8_CLASSES)}}}
    if seg:
        for m, v in ((ref, 0.40), (mod, 0.37)):
            m["metrics"]["segm"] = {"mAP50_95": v, "mAP50": v + 0.2, "mean_recall": 0.5}
    d = {k: (None if int8_box.get(k) is None else round(100 * (int8_box[k] - REF_BOX[k]), 4))
         for k in ("mAP50", "mAP50_95", "AR100", "AP_small", "AP_medium", "AP_large")}
    d["mean_recall"] = -0.5  # paired: int8 at float's operating point
    d["mean_recall_own_conf"] = 1.0
    d["per_class"] = delta_rows(REF_CLASSES, INT8_CLASSES)
    metrics = {"bbox": d}
    if seg:
        metrics["segm"] = {"mAP50_95": -3.0, "mAP50": -3.0, "mean_recall": -1.0}
    return {"qharness": "0.1.0", "metric": "coco", "dataset": {"sha256": dataset, "images": 100},
            "models": [ref, mod],
            "deltas": [{"reference": "float", "model": "int8", "unit": "points (model - reference) x 100",
                        "metrics": metrics, "changed_images": {"count": 7, "of": 100}}]}


def gate(*checks, **boot):
    doc = {"check": list(checks)}
    if boot:
        doc["bootstrap"] = boot
    return gate_from_dict(doc, "gate.toml")


def one(verdict):
    assert len(verdict.results) == 1
    return verdict.results[0]


# ---------------------------------------------------------------------------------------------- values


def test_max_drop_pass_and_fail():
    s = make_summary()
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3}), s))
    assert (r.value, r.passed, r.status, r.model, r.reference) == (4.0, False, "failed", "int8", "float")
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 4.0}), s)
    assert one(v).passed is True and v.passed and v.exit_code == 0  # the limit itself passes
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3.99}), s)
    assert not v.passed and v.exit_code == 1


def test_max_drop_reads_paired_mean_recall_and_falls_back_to_models():
    s = make_summary()
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mean_recall", "limit": 0.4}), s))
    assert r.value == 0.5 and r.passed is False  # the paired delta, not 60 - 61 = -1 from the models
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mAP75", "limit": 2.5}), s))
    assert r.value == 3.0 and r.passed is False  # not in the delta row: 100 * (0.55 - 0.52)
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "AR100", "limit": 3}), s))
    assert r.value == 3.0 and r.passed is True


def test_undefined_metric_and_missing_masks_are_skipped_not_failed():
    s = make_summary()
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "AP_small", "limit": 1},
                           {"kind": "max_drop", "metric": "mAP50_95", "iou_type": "segm", "limit": 1},
                           {"kind": "min_value", "metric": "mAP50", "iou_type": "segm", "limit": 99},
                           {"kind": "max_drop", "metric": "mAP50", "limit": 5}), s)
    assert [r.status for r in v.results] == ["skipped", "skipped", "skipped", "passed"]
    assert "undefined" in v.results[0].reason
    assert "float has no masks (segm) metrics" == v.results[1].reason
    assert "int8 has no masks (segm) metrics" == v.results[2].reason
    assert v.passed and v.exit_code == 0 and v.counts == {"passed": 1, "failed": 0, "skipped": 3}
    # all skipped: nothing failed
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "iou_type": "segm", "limit": 1}), s)
    assert v.passed and "no check applied" in v.headline


def test_segm_checks_on_a_seg_summary():
    s = make_summary(seg=True)
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "iou_type": "segm", "limit": 2.5}), s))
    assert (r.value, r.passed, r.iou_type) == (3.0, False, "segm")
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mAP50", "iou_type": "segm", "limit": 57}), s))
    assert (r.value, r.passed, r.unit) == (57.0, True, "%")


def test_class_drop_respects_min_instances():
    """Without intervals each class fails on its drop vs the limit; classes below min_instances are listed as
    too small to judge, and one that dropped more than the worst judged class is named even then."""
    s = make_summary()
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 50, "limit": 7}), s))
    assert (r.value, r.passed) == (8.0, False)  # square (60 instances); triangle's 20 has only 10 instances
    msg = r.message()
    assert msg.startswith("1 class past the limit 7 pts: square 8.00 pts (60 instances)")
    assert "too small to judge (1): triangle 20.00 pts (10 instances, fewer than min_instances = 50)" in msg
    assert "largest drop of all is triangle 20.00 pts" in r.detail
    assert [(c.name, c.status) for c in r.classes] == [("triangle", "too small"), ("square", "failed"),
                                                       ("circle", "passed")]
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 50, "limit": 8}), s))
    assert r.passed is True and r.message().startswith("no class past the limit 8 pts; worst: square 8.00 pts")
    assert "triangle" in r.detail  # never an unaffected class named worst while an excluded one dropped more
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 60, "limit": 7}), s))
    assert r.value == 8.0  # exactly min_instances is enough
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 61, "limit": 7}), s))
    assert (r.value, r.passed) == (5.0, True)
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "limit": 19}), s))
    assert (r.value, r.passed) == (20.0, False) and "triangle" in r.message()  # default min_instances 1
    assert r.detail is None
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50", "min_instances": 11, "limit": 2}), s))
    assert (r.value, r.passed) == (2.0, True)
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50", "min_instances": 1000, "limit": 2}), s))
    assert r.status == "skipped" and "every class too small to judge" in r.reason and "1000" in r.reason


def test_class_drop_from_models_when_the_delta_has_no_rows():
    s = make_summary()
    del s["deltas"][0]["metrics"]["bbox"]["per_class"]
    s["models"][1]["metrics"]["bbox"]["per_class"]["3"]["AP50_95"] = None  # undefined: not a candidate
    r = one(evaluate_gate(gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 50, "limit": 7}), s))
    assert (r.value, r.passed) == (5.0, True) and "worst: circle 5.00 pts" in r.message()
    assert [c.name for c in r.classes] == ["triangle", "circle"]  # square: undefined, not a candidate


def test_min_value_in_percent_and_on_the_reference_by_name():
    s = make_summary()
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mAP50", "limit": 70}), s))
    assert (r.model, r.value, r.passed) == ("int8", 69.0, False)
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mAP50", "limit": 70, "model": "float"}), s))
    assert (r.model, r.value, r.passed) == ("float", 70.0, True)
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mAP50", "limit": 68.5}), s))
    assert r.passed is True


def test_regression_vs_baseline():
    base = make_summary({**INT8_BOX, "mAP50_95": 0.48})  # the accepted run: int8 at 48, drop 2 pts
    now = make_summary()  # int8 at 46, drop 4 pts
    c = {"kind": "max_regression", "metric": "mAP50_95", "limit": 1}
    r = one(evaluate_gate(gate(c), now, baseline=base))
    assert (r.value, r.passed) == (2.0, False)
    assert r.detail == "baseline 48.00 %, now 46.00 %"
    r = one(evaluate_gate(gate({**c, "of": "drop", "limit": 2}), now, baseline=base))
    assert (r.value, r.passed) == (2.0, True)  # drop 4 now vs 2 then
    r = one(evaluate_gate(gate({**c, "limit": -1}), base, baseline=now))
    assert (r.value, r.passed) == (-2.0, True)  # improved by 2 pts
    # no baseline, another dataset, another --metric, a model the baseline lacks: skipped
    assert one(evaluate_gate(gate(c), now)).reason.startswith("no baseline given")
    other = make_summary(dataset="e" * 64)
    assert "another dataset" in one(evaluate_gate(gate(c), now, baseline=other)).reason
    compat = dict(base, metric="compat")
    assert "--metric compat" in one(evaluate_gate(gate(c), now, baseline=compat)).reason
    renamed = copy.deepcopy(base)
    renamed["models"][1]["name"] = "int8-old"
    assert one(evaluate_gate(gate(c), now, baseline=renamed)).reason == "the baseline has no model named int8"


def test_model_filter_and_several_compared_models():
    s = make_summary()
    second = copy.deepcopy(s["models"][1])
    second["name"] = "int8b"
    second["metrics"]["bbox"]["mAP50_95"] = 0.40
    s["models"].append(second)
    d = copy.deepcopy(s["deltas"][0])
    d["model"] = "int8b"
    d["metrics"]["bbox"]["mAP50_95"] = -10.0
    s["deltas"].append(d)
    c = {"kind": "max_drop", "metric": "mAP50_95", "limit": 5}
    v = evaluate_gate(gate(c), s)
    assert [(r.model, r.value, r.passed) for r in v.results] == [("int8", 4.0, True), ("int8b", 10.0, False)]
    assert v.headline.startswith("Gate FAILED: 1 of 2 checks failed (check[1] ")
    assert v.headline.endswith(", int8b)")
    v = evaluate_gate(gate({**c, "model": "int8"}), s)
    assert [(r.model, r.passed) for r in v.results] == [("int8", True)] and v.passed
    v = evaluate_gate(gate({**c, "model": ["int8b", "int8"]}), s)
    assert [r.model for r in v.results] == ["int8b", "int8"]
    with pytest.raises(InputError, match=r'^gate.toml: check\[1\].model: no model named "nope" in this run'):
        evaluate_gate(gate({**c, "model": "nope"}), s)
    with pytest.raises(InputError, match=r'^gate.toml: check\[1\].model: "float" is the float reference'):
        evaluate_gate(gate({**c, "model": "float"}), s)


def test_one_model_run_has_no_drop_but_min_values_apply():
    s = make_summary()
    s["models"] = s["models"][1:]
    s["deltas"] = []
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 5},
                           {"kind": "min_value", "metric": "mAP50_95", "limit": 45}), s)
    assert [(r.model, r.status) for r in v.results] == [("int8", "skipped"), ("int8", "passed")]
    assert "no float reference" in v.results[0].reason


# ---------------------------------------------------------------------------------------------- bootstrap CIs


def drop_samples(int8_offsets, common=None):
    """Resamples where float is 0.50 (+ common) and int8 0.46 - offsets (+ common): drop = 4 + 100 * offsets."""
    n = len(int8_offsets)
    common = np.zeros(n) if common is None else common
    return {"float": {"bbox": {"mAP50_95": 0.50 + common}},
            "int8": {"bbox": {"mAP50_95": 0.46 - np.asarray(int8_offsets) + common}}}


def test_percentile_ci_by_hand():
    # drops 2.00, 2.02, ..., 6.00 (201 values): the 2.5 % and 97.5 % points lie on the 6th and 196th values
    assert percentile_ci(np.linspace(2, 6, 201), 0.95) == (2.1, 5.9)
    assert percentile_ci(np.linspace(2, 6, 201), 0.90) == (2.2, 5.8)
    assert percentile_ci([np.nan, 1.0, np.nan, 3.0], 0.5) == (1.5, 2.5)  # NaN resamples ignored
    assert percentile_ci([np.nan], 0.95) is None


def test_ci_of_the_drop_and_outside_noise():
    s = make_summary()
    samples = drop_samples(np.linspace(-0.02, 0.02, 201))
    c = {"kind": "max_drop", "metric": "mAP50_95"}
    r = one(evaluate_gate(gate({**c, "limit": 3}), s, samples=samples))
    assert r.ci == (2.1, 5.9) and r.passed is False and r.outside_noise is False  # fails within noise
    r = one(evaluate_gate(gate({**c, "limit": 1.5}), s, samples=samples))
    assert r.passed is False and r.outside_noise is True  # fails clear of noise
    r = one(evaluate_gate(gate({**c, "limit": 7}), s, samples=samples))
    assert r.passed is True and r.outside_noise is True
    r = one(evaluate_gate(gate({**c, "limit": 5}), s, samples=samples))
    assert r.passed is True and r.outside_noise is False
    v = evaluate_gate(gate({**c, "limit": 3}, confidence=0.9), s, samples=samples)
    assert one(v).ci == (2.2, 5.8) and v.confidence == 0.9 and v.resamples == 201
    assert "90% CI [2.20, 5.80], within noise" in one(v).message(v.confidence)


def test_ci_is_paired():
    # a large image-set effect shared by both models cancels: the drop is 4 pts on every resample
    common = np.random.default_rng(1).normal(0, 0.1, 500)
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3}), make_summary(),
                          samples=drop_samples(np.zeros(500), common)))
    assert r.ci == (4.0, 4.0) and r.outside_noise is True


def test_ci_reproducible_and_narrowing_with_spread():
    s = make_summary()
    g = gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3})

    def ci(seed, spread):
        offsets = np.random.default_rng(seed).normal(0, 1, 400) * spread
        return one(evaluate_gate(g, s, samples=drop_samples(offsets))).ci

    assert ci(7, 0.01) == ci(7, 0.01)  # same samples, same CI
    assert ci(7, 0.01) != ci(8, 0.01)
    widths = [ci(7, sp)[1] - ci(7, sp)[0] for sp in (0.02, 0.01, 0.005, 0.001)]
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 10
    # the same arrays scaled: the width scales with them (percentiles are linear in the data)
    assert widths[0] == pytest.approx(2 * widths[1], abs=2e-4)


def test_ci_unpaired_arrays_are_a_caller_bug():
    samples = drop_samples(np.zeros(300))
    samples["int8"]["bbox"]["mAP50_95"] = samples["int8"]["bbox"]["mAP50_95"][:200]
    with pytest.raises(ValueError, match="not paired"):
        evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3}), make_summary(), samples=samples)


def test_ci_mean_recall_uses_the_paired_samples():
    # as validator.metrics.bootstrap.resampled gives them: a compared model's mean_recall is paired (at the
    # reference's operating point); its own-optimum recall, if given, is mean_recall_own
    s = make_summary()
    t = np.linspace(-0.01, 0.01, 201)
    samples = {"float": {"bbox": {"mean_recall": 0.60 + t}},
               "int8": {"bbox": {"mean_recall": 0.595 + t, "mean_recall_own": 0.61 + 2 * t}}}
    r = one(evaluate_gate(gate({"kind": "max_drop", "metric": "mean_recall", "limit": 1}), s, samples=samples))
    assert r.value == 0.5 and r.ci == (0.5, 0.5)
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mean_recall", "limit": 60}), s, samples=samples))
    assert r.value == 61.0 and r.ci == (59.1, 62.9)  # from mean_recall_own: 61 + 200 * t
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mean_recall", "limit": 59, "model": "float"}), s,
                          samples=samples))
    assert r.value == 60.0 and r.ci == (59.05, 60.95)  # the reference's own samples
    del samples["int8"]["bbox"]["mean_recall_own"]
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mean_recall", "limit": 60}), s, samples=samples))
    assert r.ci is None and r.outside_noise is None and r.passed is True  # never the paired samples


def test_ci_min_value_and_regression():
    s = make_summary()
    t = np.linspace(-0.02, 0.02, 201)
    samples = {"int8": {"bbox": {"mAP50": 0.69 + t, "mAP50_95": 0.46 + t}}}
    r = one(evaluate_gate(gate({"kind": "min_value", "metric": "mAP50", "limit": 68}), s, samples=samples))
    assert r.ci == (67.1, 70.9) and r.passed is True and r.outside_noise is False
    base = make_summary({**INT8_BOX, "mAP50_95": 0.48})
    r = one(evaluate_gate(gate({"kind": "max_regression", "metric": "mAP50_95", "limit": 1}), s, baseline=base,
                          samples=samples))
    assert r.value == 2.0 and r.ci == (0.1, 3.9)  # 100 * (0.48 - resample), the baseline held fixed


def test_each_class_is_judged_by_its_own_interval():
    """A class past the limit fails only when its own interval is past it too; one whose interval holds the
    limit is listed as within noise (the check passes); string class ids work the same."""
    s = make_summary()
    t = np.linspace(0, 0.10, 201)
    pc_ref = {1: {"AP50_95": np.full(201, 0.6)}, 2: {"AP50_95": np.full(201, 0.3)}, 3: {"AP50_95": np.full(201, 0.5)}}
    pc_int8 = {1: {"AP50_95": 0.6 - t},  # circle: 0..10 pts, CI [0.25, 9.75]
               2: {"AP50_95": np.full(201, 0.1)},  # triangle: 20 pts every time
               3: {"AP50_95": 0.5 - (0.05 + t / 2)}}  # square: 5..10 pts, CI [5.12, 9.88]
    samples = {"float": {"bbox": {"per_class": pc_ref}}, "int8": {"bbox": {"per_class": pc_int8}}}
    g = gate({"kind": "max_class_drop", "metric": "AP50_95", "limit": 7.5})
    r = one(evaluate_gate(g, s, samples=samples))
    by = {c.name: c for c in r.classes}
    assert by["circle"].ci == (0.25, 9.75) and by["circle"].status == "passed"  # 5 pts, below the limit
    assert by["square"].status == "within noise"  # 8 pts > 7.5, but its interval holds 7.5
    assert by["triangle"].status == "failed" and by["triangle"].ci == (20.0, 20.0)
    assert (r.passed, r.value, r.ci, r.outside_noise) == (False, 20.0, (20.0, 20.0), True)
    assert r.message(0.95).startswith("1 class past the limit 7.5 pts clear of its noise: triangle 20.00 pts "
                                      "(10 instances, 95% CI [20.00, 20.00])")
    assert "past the limit but within noise: square 8.00 pts" in r.message(0.95)
    # without the broken class: the check passes, and says a class was over the limit within its noise
    samples["int8"]["bbox"]["per_class"] = {str(k): v for k, v in pc_int8.items()}
    samples["float"]["bbox"]["per_class"] = {str(k): v for k, v in pc_ref.items()}
    s2 = make_summary()
    for row in s2["deltas"][0]["metrics"]["bbox"]["per_class"]:
        if row["name"] == "triangle":
            row["dAP50_95"] = -5.0
    samples["int8"]["bbox"]["per_class"]["2"] = {"AP50_95": np.full(201, 0.25)}
    r2 = one(evaluate_gate(g, s2, samples=samples))
    assert r2.passed is True and r2.value == 8.0 and r2.outside_noise is False
    assert r2.message(0.95).startswith("no class past the limit 7.5 pts clear of its noise; worst: square 8.00 pts")


def test_the_star_case_fails_where_the_cutoff_hid_it():
    """Measured before: a class that dropped 21.5 pts with 196 instances was left out by min_instances = 200
    and the check passed naming an unaffected class the worst. Judged by its own interval it fails."""
    s = make_summary()
    rows = s["deltas"][0]["metrics"]["bbox"]["per_class"]
    rows.append({"category_id": 7, "name": "star", "n_gt": 196, "dAP50": -15.0, "dAP50_95": -21.5})
    rng = np.random.default_rng(0)
    ref = {c: {"AP50_95": np.full(500, v)} for c, v in ((1, 0.6), (2, 0.3), (3, 0.5), (7, 0.6))}
    q = {1: {"AP50_95": 0.55 + rng.normal(0, 0.01, 500)}, 2: {"AP50_95": 0.1 + rng.normal(0, 0.05, 500)},
         3: {"AP50_95": 0.42 + rng.normal(0, 0.01, 500)}, 7: {"AP50_95": 0.385 + rng.normal(0, 0.03, 500)}}
    samples = {"float": {"bbox": {"per_class": ref}}, "int8": {"bbox": {"per_class": q}}}
    old = gate({"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 200, "limit": 12})
    r = one(evaluate_gate(old, s, samples=samples))
    assert r.status == "skipped"  # every class below the old cutoff: nothing judged, and it says so
    new = gate({"kind": "max_class_drop", "metric": "AP50_95", "limit": 12})
    r = one(evaluate_gate(new, s, samples=samples))
    assert r.passed is False and [c.name for c in r.classes if c.status == "failed"] == ["star"]
    # triangle dropped 20 pts but over 10 instances its interval (about 10 to 30) holds the limit
    assert [c.name for c in r.classes if c.status == "within noise"] == ["triangle"]


# ---------------------------------------------------------------------------------------------- gate files


def write(tmp_path, text, name="gate.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
name = "nightly"
[bootstrap]
resamples = 500
seed = 3
confidence = 0.9

[[check]]
kind = "max_drop"
metric = "mAP50_95"
limit = 5
name = "box mAP50-95 loss"

[[check]]
kind = "max_class_drop"
metric = "AP50"
iou_type = "segm"
min_instances = 20
limit = 12.5
model = ["a", "b"]

[[check]]
kind = "max_regression"
metric = "mean_recall"
of = "drop"
limit = 1.0
"""


def test_load_good_gate(tmp_path):
    g = load_gate(write(tmp_path, GOOD))
    assert g.name == "nightly" and g.bootstrap == Bootstrap(resamples=500, seed=3, confidence=0.9)
    a, b, c = g.checks
    assert (a.id, a.kind, a.metric, a.limit, a.iou_type, a.models, a.description) == \
        ("check[1]", "max_drop", "mAP50_95", 5.0, "bbox", None, "box mAP50-95 loss")
    assert (b.kind, b.metric, b.iou_type, b.min_instances, b.limit, b.models) == \
        ("max_class_drop", "AP50", "segm", 20, 12.5, ("a", "b"))
    assert (c.of, c.unit) == ("drop", "pts")
    json.dumps(g.to_dict())
    # defaults
    g = load_gate(write(tmp_path, '[[check]]\nkind = "min_value"\nmetric = "mAP50"\nlimit = 40\n'))
    assert g.bootstrap == Bootstrap(1000, 0, 0.95) and g.checks[0].unit == "%" and g.name is None


C = '[[check]]\nkind = "max_drop"\nmetric = "mAP50"\nlimit = 1\n'  # a valid check
BAD = [
    ('kind = \n', r"gate.toml: not valid TOML: .*line 1"),
    ('thresholds = 1\n' + C, r"gate.toml: thresholds: unknown key"),
    ('name = 3\n' + C, r"gate.toml: name: expected a non-empty"),
    ('name = "x"\n', r"gate.toml: check: missing"),
    ('[check]\nkind = "max_drop"\n', r"gate.toml: check: expected \[\[check\]\] tables"),
    ('check = []\n', r"gate.toml: check: expected one or more"),
    ('[[check]]\nmetric = "mAP50"\nlimit = 1\n', r"gate.toml: check\[1\].kind: missing"),
    ('[[check]]\nkind = "max_dorp"\nmetric = "mAP50"\nlimit = 1\n',
     r'gate.toml: check\[1\].kind: unknown check kind "max_dorp" .*did you mean "max_drop"'),
    ('[[check]]\nkind = 1\nmetric = "mAP50"\nlimit = 1\n', r"gate.toml: check\[1\].kind: expected a string, got 1"),
    ('[[check]]\nkind = "max_drop"\nlimit = 1\n', r"gate.toml: check\[1\].metric: missing"),
    ('[[check]]\nkind = "max_drop"\nmetric = "mAP50-95"\nlimit = 1\n',
     r'gate.toml: check\[1\].metric: unknown metric "mAP50-95" .*did you mean "mAP50_95"'),
    ('[[check]]\nkind = "max_class_drop"\nmetric = "mAP50"\nlimit = 1\n',
     r'gate.toml: check\[1\].metric: unknown per-class metric "mAP50" .*AP50, AP50_95'),
    (C + '[[check]]\nkind = "max_drop"\nmetric = "mAP50"\n'
     'limit = "3 pts"\n', r'^gate.toml: check\[2\].limit: expected a number, got "3 pts"$'),
    ('[[check]]\nkind = "max_drop"\nmetric = "mAP50"\n', r"gate.toml: check\[1\].limit: missing \(the largest"),
    ('[[check]]\nkind = "max_drop"\nmetric = "mAP50"\nlimit = true\n',
     r"gate.toml: check\[1\].limit: expected a number, got true"),
    ('[[check]]\nkind = "max_drop"\nmetric = "mAP50"\nlimit = nan\n',
     r"gate.toml: check\[1\].limit: expected a finite"),
    ('[[check]]\nkind = "min_value"\nmetric = "mAP50"\nlimit = 150\n',
     r"gate.toml: check\[1\].limit: expected a percentage in \[0, 100\], got 150"),
    (C + 'iou_type = "mask"\n',
     r'gate.toml: check\[1\].iou_type: expected "bbox" or "segm" \(masks\), got "mask"'),
    (C + 'min_instances = 5\n',
     r'gate.toml: check\[1\].min_instances: only for kind = "max_class_drop", this check is "max_drop"'),
    ('[[check]]\nkind = "max_class_drop"\nmetric = "AP50"\nlimit = 1\nmin_instances = 0\n',
     r"gate.toml: check\[1\].min_instances: expected a positive integer, got 0"),
    ('[[check]]\nkind = "max_regression"\nmetric = "AP50"\nlimit = 1\n', r"gate.toml: check\[1\].metric: unknown"),
    ('[[check]]\nkind = "max_regression"\nmetric = "mAP50"\nlimit = 1\nof = "delta"\n',
     r'gate.toml: check\[1\].of: expected "value" or "drop", got "delta"'),
    (C + 'treshold = 2\n',
     r"gate.toml: check\[1\].treshold: unknown key \(expected one of: kind, metric, limit"),
    (C + 'model = 3\n',
     r"gate.toml: check\[1\].model: expected a model name or a list of names, got 3"),
    (C + 'model = []\n', r"gate.toml: check\[1\].model: expected"),
    (C + 'name = ""\n', r"gate.toml: check\[1\].name: expected"),
    ('[bootstrap]\nresamples = 100\n' + C,
     r"gate.toml: bootstrap.resamples: 100 is too few .* >= 200"),
    ('[bootstrap]\nresamples = 1e3\n' + C,
     r"gate.toml: bootstrap.resamples: expected an integer, got 1000.0"),
    ('[bootstrap]\nconfidence = 95\n' + C,
     r"gate.toml: bootstrap.confidence: expected a fraction in \[0.5, 1\), got 95 \(a fraction: 0.95\?\)"),
    ('[bootstrap]\nseed = -1\n' + C,
     r"gate.toml: bootstrap.seed: expected a non-negative integer, got -1"),
    ('[bootstrap]\nsamples = 500\n' + C,
     r'gate.toml: bootstrap.samples: unknown key .*did you mean "resamples"'),
    ('bootstrap = 5\n' + C,
     r"gate.toml: bootstrap: expected a table, got 5"),
]


@pytest.mark.parametrize(("text", "pattern"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_malformed_gate_names_the_file_and_key(tmp_path, text, pattern):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_gate(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(p) + ": ")
    assert re.search(pattern, msg.replace(str(p), "gate.toml")), msg


def test_unreadable_gate_files(tmp_path):
    with pytest.raises(InputError, match=r"missing.toml: no such gate file"):
        load_gate(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="is a folder"):
        load_gate(tmp_path)
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'name = "\xe9"\n')
    with pytest.raises(InputError, match="not valid TOML"):
        load_gate(p)


def test_resamples_zero_means_no_cis(tmp_path):
    g = load_gate(write(tmp_path, '[bootstrap]\nresamples = 0\n[[check]]\nkind = "max_drop"\nmetric = "mAP50"\n'
                                  'limit = 1\n'))
    assert g.bootstrap.resamples == 0


def test_load_summary(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_summary(tmp_path / "nope.json")
    bad = write(tmp_path, "{", "bad.json")
    with pytest.raises(InputError, match="bad.json: not valid JSON"):
        load_summary(bad)
    other = write(tmp_path, '{"a": 1}', "other.json")
    with pytest.raises(InputError, match="other.json: not a qharness summary.json"):
        load_summary(other)
    ok = write(tmp_path, json.dumps(make_summary()), "summary.json")
    assert load_summary(ok) == make_summary()


# ---------------------------------------------------------------------------------------------- rendering


def verdict_mix():
    s = make_summary()
    samples = drop_samples(np.linspace(-0.02, 0.02, 201))
    g = gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3, "name": 'drop <"&\'> | pipes\x01'},
             {"kind": "max_drop", "metric": "mAP50", "limit": 5},
             {"kind": "max_drop", "metric": "mAP50_95", "iou_type": "segm", "limit": 1})
    return evaluate_gate(g, s, samples=samples)


def test_junit_parses_one_testcase_per_check():
    v = verdict_mix()
    xml = junit_xml(v, 'qharness <nightly> & "co"')
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite.get("name") == 'qharness <nightly> & "co"'
    counts = [suite.get(k) for k in ("tests", "failures", "skipped", "errors")]
    assert counts == ["3", "1", "1", "0"]
    cases = suite.findall("testcase")
    assert len(cases) == 3 and all(c.get("classname") == "int8" for c in cases)
    assert cases[0].get("name") == "check[1]: drop <\"&'> | pipes?"  # control character replaced
    fail = cases[0].find("failure")
    assert fail is not None and fail.get("message").startswith("drop 4.00 pts > limit 3 pts; 95% CI [2.10, 5.90]")
    assert cases[1].find("failure") is None and cases[1].find("skipped") is None
    assert cases[2].find("skipped").get("message") == "float has no masks (segm) metrics"
    assert junit_xml(v, "s") == junit_xml(verdict_mix(), "s")  # deterministic


def test_markdown_table_and_verdict_line():
    v = verdict_mix()
    md = markdown(v)
    lines = md.splitlines()
    # the failed check named (markdown-escaped pipe, control character replaced) with its model
    assert lines[0] == "**Gate FAILED: 1 of 2 checks failed (check[1] drop <\"&'> \\| pipes?, int8), 1 skipped**"
    header = next(i for i, line in enumerate(lines) if line.startswith("| Check |"))
    assert lines[header] == "| Check | Model | Value | Limit | 95% CI | Result |"
    rows = lines[header + 2:]
    assert len(rows) == 3 and all(r.count(" | ") == 5 for r in rows)  # escaped pipes keep 6 columns
    assert "| int8 | 4.00 pts | <= 3 pts | 2.10 to 5.90 | **FAIL**, within noise |" in rows[0]
    assert "\\|" in rows[0]
    assert rows[1].endswith("| 1.00 pts | <= 5 pts | n/a | pass |")
    assert "skipped: float has no masks (segm) metrics" in rows[2]
    ok = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50", "limit": 5}), make_summary())
    assert markdown(ok).splitlines()[0] == "**Gate PASSED: 1 check passed**"


def test_verdict_to_dict_is_json():
    v = verdict_mix()
    d = json.loads(json.dumps(v.to_dict()))
    assert d["passed"] is False and d["exit_code"] == 1 and d["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert d["results"][0]["ci"] == [2.1, 5.9] and d["results"][0]["status"] == "failed"


# ---------------------------------------------------------------------------------------------- the example gate


def seed_summary(float_m, int8_m):
    """YOLOv8n on COCO val2017 as seed 001 publishes it (edgefirst-validator): mAP50, mAP50-95, Mean Recall, %."""
    def metrics(v):
        return {"bbox": {"mAP50": v[0] / 100, "mAP50_95": v[1] / 100, "mean_recall": v[2] / 100}}
    delta = {k: round(b - a, 4) for k, a, b in zip(("mAP50", "mAP50_95", "mean_recall"), float_m, int8_m,
                                                     strict=True)}
    return {"metric": "edgefirst", "dataset": {"sha256": "c" * 64},
            "models": [{"name": "yolov8n", "role": "float", "metrics": metrics(float_m)},
                       {"name": "yolov8n_int8", "role": "int8", "metrics": metrics(int8_m)}],
            "deltas": [{"reference": "yolov8n", "model": "yolov8n_int8", "metrics": {"bbox": delta}}]}


def test_example_gate_passes_published_int8_and_fails_a_broken_one():
    g = load_gate(ROOT / "examples" / "gate.toml")
    float_m = (50.2, 35.75, 46.64)
    for int8_m in ((47.51, 32.03, 43.83), (46.89, 31.68, 43.84)):  # upstream and EdgeFirst INT8
        v = evaluate_gate(g, seed_summary(float_m, int8_m))
        assert v.passed, markdown(v)
        assert v.counts["passed"] >= 4
    v = evaluate_gate(g, seed_summary(float_m, (45.0, 25.75, 42.0)))  # a 10-point mAP50-95 loss
    assert not v.passed
    assert any(r.metric == "mAP50_95" and r.kind == "max_drop" for r in v.failed)


def test_example_workflow_gates_and_publishes():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((ROOT / "examples" / "nightly.yml").read_text())
    steps = wf["jobs"]["gate"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "--gate examples/gate.toml" in runs and "--baseline last-accepted" in runs and "quantize --model" in runs
    uploads = [s for s in steps if "upload-artifact" in s.get("uses", "")]
    uploaded = "\n".join(str(s["with"]["path"]) for s in uploads)
    assert "report.html" in uploaded and "junit.xml" in uploaded
    cached = [s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/cache")]
    assert "${{ env.CACHE }}" in cached and "build/history" in cached


def test_samples_from_the_bootstrap_module_fit(shapes_small):
    """The interface end to end: validator.gate.intervals.resampled per iou_type gives evaluate_gate's samples."""
    from validator.gate.intervals import Resampler, resample_indices, resampled
    from validator.metrics import cocoeval as ce

    gt = json.loads((shapes_small / "annotations.json").read_text())
    rng = np.random.default_rng(0)
    ids = [im["id"] for im in gt["images"]]

    def dets(jitter, keep):
        out = []
        for a in gt["annotations"]:
            if rng.random() > keep:
                continue
            x, y, w, h = a["bbox"]
            j = rng.normal(0, jitter * max(w, h), 2)
            out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + j[0], y + j[1], w, h],
                        "score": round(float(rng.uniform(0.05, 1)), 5)})
        return ce.prepare_detections(out, ce.IouType.BBOX, ids)

    res = {"f": ce.evaluate(gt, dets(0.03, 0.95), "bbox", keep_images=True),
           "q": ce.evaluate(gt, dets(0.12, 0.85), "bbox", keep_images=True)}
    stats = ["mAP50_95", "mAP50"]

    def model(name):
        r = res[name]
        pc = {str(c): {"name": str(c), "n_gt": v["n_gt"], "AP50": v["AP50"], "AP50_95": v["AP50_95"]}
              for c, v in r.per_class.items()}
        return {"name": name, "metrics": {"bbox": {**r.stats, "mean_recall": r.mean_recall, "per_class": pc}}}

    f, q = res["f"].stats, res["q"].stats
    summary = {"metric": "coco", "dataset": {"sha256": "x"}, "models": [model("f"), model("q")],
               "deltas": [{"reference": "f", "model": "q",
                           "metrics": {"bbox": {"mAP50_95": round(100 * (q["mAP50_95"] - f["mAP50_95"]), 4)}}}]}
    g = gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 1},
             {"kind": "max_class_drop", "metric": "AP50_95", "min_instances": 5, "limit": 30},
             {"kind": "min_value", "metric": "mAP50", "limit": 10},
             {"kind": "max_drop", "metric": "mean_recall", "limit": 50})
    idx = resample_indices(len(ids), 200, 0)
    per_model = resampled({n: Resampler.from_images(r.images, stats) for n, r in res.items()}, "f", idx)
    samples = {n: {"bbox": s} for n, s in per_model.items()}
    v = evaluate_gate(g, summary, samples=samples)
    assert v.resamples == 200
    drop, cls, floor, recall = v.results
    assert drop.value > 1 and drop.ci is not None and drop.ci[0] <= drop.value <= drop.ci[1]
    assert cls.ci is not None and floor.ci is not None and recall.ci is not None
    assert floor.ci[0] <= floor.value <= floor.ci[1]
    # the same seed gives the same verdict, byte for byte
    again = resampled({n: Resampler.from_images(r.images, stats) for n, r in res.items()}, "f",
                      resample_indices(len(ids), 200, 0))
    v2 = evaluate_gate(g, summary, samples={n: {"bbox": s} for n, s in again.items()})
    assert json.dumps(v2.to_dict()) == json.dumps(v.to_dict())
