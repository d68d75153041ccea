"""The regression gate: checks as data (a TOML file), a verdict with bootstrap CIs, JUnit XML and markdown.

Pure functions over ``summary.json`` dicts: ``load_gate`` reads and validates the file, ``evaluate_gate``
turns a summary (plus an optional baseline summary and optional bootstrap resamples) into a ``Verdict``,
``junit_xml`` and ``markdown`` render it. Nothing here runs a model or re-evaluates COCO.

The gate file
=============

Every number in a gate is in percent (absolute values, as ``table.md`` prints them: ``40`` is 40 %) or in
percentage points (drops and regressions: ``3`` is 3 pts), never a fraction::

    name = "yolov8n INT8 nightly"          # optional: the JUnit suite name

    [bootstrap]                            # optional; these are the defaults
    resamples = 1000                       # paired image resamples; >= 200, or 0 for no CIs
    seed = 0                               # the same seed and images give the same CIs
    confidence = 0.95                      # two-sided percentile interval

    [[check]]                              # check[1]
    kind = "max_drop"                      # compared model vs the float reference, in points
    metric = "mAP50_95"
    limit = 5.0                            # fails when the drop is > 5 pts
    iou_type = "bbox"                      # optional: "bbox" (default) or "segm" (masks)
    model = "yolov8n.int8"                 # optional: one model, or a list; default every compared model
    name = "INT8 box mAP50-95 loss"        # optional: the check's title in JUnit and the report

    [[check]]                              # check[2]
    kind = "max_class_drop"                # the worst single class
    metric = "AP50_95"                     # per-class metric: "AP50" or "AP50_95"
    min_instances = 100                    # only classes with >= 100 ground-truth instances (default 1)
    limit = 12.0

    [[check]]                              # check[3]
    kind = "min_value"                     # the model's own value, in percent
    metric = "mAP50"
    limit = 40.0                           # fails when mAP50 < 40 %

    [[check]]                              # check[4]
    kind = "max_regression"                # vs the baseline summary.json (the last accepted run)
    metric = "mAP50_95"
    limit = 1.0                            # fails when the model lost > 1 pt since the baseline
    of = "value"                           # optional: "value" (the model's own metric, default) or
                                           # "drop" (its drop vs the float reference grew by > limit)

Kinds and what they measure (``value`` is what is compared with ``limit``):

- ``max_drop``: ``reference - model`` in points, fails when ``value > limit``. Read from
  ``summary["deltas"]`` (``mean_recall`` there is the paired one: both models at the reference's
  F1-optimal confidence), else from the two models' metrics. Metrics: ``METRICS``.
- ``max_class_drop``: the largest per-class drop (``AP50`` or ``AP50_95``) among the classes with at least
  ``min_instances`` ground-truth instances; fails when ``value > limit``; the worst class is named.
- ``min_value``: ``100 * metric`` of the model, fails when ``value < limit``. ``model`` may name the float
  reference too.
- ``max_regression``: ``100 * (baseline - current)`` of the same model (matched by name) in points, or with
  ``of = "drop"`` the growth of its drop vs the float reference; fails when ``value > limit``. Skipped when
  no baseline is given, the baseline lacks the model, or it was measured on another dataset or ``--metric``.

A check applies to every compared model (each ``summary["deltas"][j]["model"]``; in a one-model run, every
model) unless ``model`` names some; each (check, model) pair is one result, one JUnit testcase. A check
whose quantity is undefined in this run (masks of a detection model, no baseline, no class with enough
instances) is *skipped* with the reason, never failed. Checks are numbered from 1 in file order
(``check[1]`` is the first ``[[check]]`` table); error messages name them so.

Bootstrap confidence intervals
==============================

The caller resamples images (``gate.bootstrap``: B resamples, seed) and passes the metric recomputed on
each resample; the same resampled image sets for every model, so model differences are paired::

    samples[model_name][iou_type][metric] -> np.ndarray (B,)      # fractions; NaN where undefined
    samples[model_name][iou_type]["per_class"][cat_id]["AP50" | "AP50_95"] -> (B,)   # cat_id int or str

i.e. for each iou_type, ``validator.metrics.bootstrap.resampled(...)`` of that evaluation. As there,
``mean_recall`` of a compared model is its recall at the reference's F1-optimal confidence of the same
resample (paired, like the Mean Recall delta), and the reference's is at its own optimum. A compared
model's recall at its own optimum (what ``min_value`` and ``max_regression`` of ``mean_recall`` check) is
optional, under ``"mean_recall_own"``; without it those two checks get no CI.

Each check's CI is the percentile interval, at ``confidence``, of its own quantity computed per resample
(e.g. ``100 * (float - int8)`` for a drop; the worst eligible class per resample for a class drop; against a
baseline, the baseline's value is held fixed). A check passes or fails on ``value`` vs ``limit`` alone;
``outside_noise`` says whether ``limit`` lies outside the CI, i.e. whether the pass or the failure is
clear of resampling noise. Missing samples give ``ci = None``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from validator.errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib is 3.11+; tomli is the same parser (tomli; python_version < "3.11")
    import tomli as tomllib

KINDS = ("max_drop", "max_class_drop", "min_value", "max_regression")
# Scalar metrics of summary.json a check may name (fractions there; percent / points in the gate).
METRICS = ("mAP50_95", "mAP50", "mAP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100",
           "AR_small", "AR_medium", "AR_large", "mean_recall", "f1")
CLASS_METRICS = ("AP50", "AP50_95")
IOU_TYPES = ("bbox", "segm")
REGRESSION_OF = ("value", "drop")
MIN_RESAMPLES = 200

_TOP_KEYS = ("name", "bootstrap", "check")
_BOOTSTRAP_KEYS = ("resamples", "seed", "confidence")
_COMMON_KEYS = ("kind", "metric", "limit", "iou_type", "model", "name")
_KIND_KEYS = {"max_drop": (), "max_class_drop": ("min_instances",), "min_value": (), "max_regression": ("of",)}
_LIMIT_MEANS = {
    "max_drop": "the largest allowed drop vs the float reference, in points",
    "max_class_drop": "the largest allowed drop of any one class, in points",
    "min_value": "the smallest allowed value, in percent",
    "max_regression": "the largest allowed loss vs the baseline, in points",
}


# ---------------------------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000  # 0: no confidence intervals
    seed: int = 0
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return {"resamples": self.resamples, "seed": self.seed, "confidence": self.confidence}


@dataclass(frozen=True)
class Check:
    index: int  # 1-based position among the file's [[check]] tables
    kind: str
    metric: str
    limit: float
    iou_type: str = "bbox"
    models: tuple[str, ...] | None = None  # None: every compared model
    min_instances: int = 1  # max_class_drop only
    of: str = "value"  # max_regression only
    name: str | None = None

    @property
    def id(self) -> str:
        return f"check[{self.index}]"

    @property
    def unit(self) -> str:
        return "%" if self.kind == "min_value" else "pts"

    @property
    def description(self) -> str:
        """The user's ``name``, else a title made from the check."""
        if self.name:
            return self.name
        lim = f"{_num(self.limit)} {self.unit}"
        what = f"{self.metric} ({self.iou_type})"
        if self.kind == "max_drop":
            return f"{what} drop vs float <= {lim}"
        if self.kind == "max_class_drop":
            return f"worst class {what} drop (classes with >= {self.min_instances} instances) <= {lim}"
        if self.kind == "min_value":
            return f"{what} >= {lim}"
        if self.of == "drop":
            return f"{what} drop vs float, growth since baseline <= {lim}"
        return f"{what} regression vs baseline <= {lim}"

    def to_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "metric": self.metric, "iou_type": self.iou_type,
             "limit": self.limit, "unit": self.unit, "models": list(self.models) if self.models else None,
             "name": self.description}
        if self.kind == "max_class_drop":
            d["min_instances"] = self.min_instances
        if self.kind == "max_regression":
            d["of"] = self.of
        return d


@dataclass(frozen=True)
class Gate:
    path: str
    checks: tuple[Check, ...]
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    name: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "bootstrap": self.bootstrap.to_dict(),
                "checks": [c.to_dict() for c in self.checks]}


def _show(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _suggest(v: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.6) if isinstance(v, str) else []
    hint = f"; did you mean {json.dumps(close[0])}?" if close else ""
    return f"(expected one of: {', '.join(choices)}){hint}"


def load_gate(path: str | Path) -> Gate:
    """Read and validate a gate file; every problem is an ``InputError`` naming the file and the key."""
    p = Path(path)
    where = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: no such gate file") from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a folder, expected a gate TOML file") from None
    except OSError as e:
        raise InputError(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{where}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{where}: not valid TOML: {e}") from None
    return gate_from_dict(doc, where)


def gate_from_dict(doc: Mapping[str, Any], where: str = "gate") -> Gate:
    """Validate an already parsed gate document (``where`` names it in errors)."""

    def bad(key: str, problem: str) -> InputError:
        return InputError(f"{where}: {key}: {problem}")

    for k in doc:
        if k not in _TOP_KEYS:
            raise bad(k, f"unknown key {_suggest(k, _TOP_KEYS)}")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad("name", f"expected a non-empty string, got {_show(name)}")

    boot = _bootstrap(doc.get("bootstrap", {}), bad)

    if "check" not in doc:
        raise bad("check", "missing: a gate needs at least one [[check]] table")
    raw_checks = doc["check"]
    if isinstance(raw_checks, dict):
        raise bad("check", "expected [[check]] tables (an array of tables), got a single [check] table")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise bad("check", f"expected one or more [[check]] tables, got {_show(raw_checks)}")
    checks = tuple(_check(i, c, bad) for i, c in enumerate(raw_checks, start=1))
    return Gate(path=where, checks=checks, bootstrap=boot, name=name)


def _bootstrap(b: Any, bad) -> Bootstrap:
    if not isinstance(b, dict):
        raise bad("bootstrap", f"expected a table, got {_show(b)}")
    for k in b:
        if k not in _BOOTSTRAP_KEYS:
            raise bad(f"bootstrap.{k}", f"unknown key {_suggest(k, _BOOTSTRAP_KEYS)}")
    d = Bootstrap()
    n = b.get("resamples", d.resamples)
    if not isinstance(n, int) or isinstance(n, bool):
        raise bad("bootstrap.resamples", f"expected an integer, got {_show(n)}")
    if n != 0 and n < MIN_RESAMPLES:
        raise bad("bootstrap.resamples", f"{n} is too few for a percentile interval: use >= {MIN_RESAMPLES} "
                                         "(or 0 for no confidence intervals)")
    seed = b.get("seed", d.seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise bad("bootstrap.seed", f"expected a non-negative integer, got {_show(seed)}")
    conf = b.get("confidence", d.confidence)
    if not _is_number(conf):
        raise bad("bootstrap.confidence", f"expected a number, got {_show(conf)}")
    if not 0.5 <= conf < 1:
        hint = f" (a fraction: {conf / 100:g}?)" if 50 <= conf < 100 else ""
        raise bad("bootstrap.confidence", f"expected a fraction in [0.5, 1), got {_show(conf)}{hint}")
    return Bootstrap(resamples=n, seed=seed, confidence=float(conf))


def _check(i: int, c: Any, bad) -> Check:
    at = f"check[{i}]"
    if not isinstance(c, dict):
        raise bad(at, f"expected a table, got {_show(c)}")
    if "kind" not in c:
        raise bad(f"{at}.kind", f"missing {_suggest(None, KINDS)}")
    kind = c["kind"]
    if not isinstance(kind, str):
        raise bad(f"{at}.kind", f"expected a string, got {_show(kind)}")
    if kind not in KINDS:
        raise bad(f"{at}.kind", f"unknown check kind {_show(kind)} {_suggest(kind, KINDS)}")
    allowed = _COMMON_KEYS + _KIND_KEYS[kind]
    for k in c:
        if k in allowed:
            continue
        owners = [kd for kd, keys in _KIND_KEYS.items() if k in keys]
        if owners:
            raise bad(f"{at}.{k}", f"only for kind = {json.dumps(owners[0])}, this check is {json.dumps(kind)}")
        raise bad(f"{at}.{k}", f"unknown key {_suggest(k, allowed)}")

    metrics = CLASS_METRICS if kind == "max_class_drop" else METRICS
    if "metric" not in c:
        raise bad(f"{at}.metric", f"missing {_suggest(None, metrics)}")
    metric = c["metric"]
    if not isinstance(metric, str):
        raise bad(f"{at}.metric", f"expected a string, got {_show(metric)}")
    if metric not in metrics:
        what = "per-class metric" if kind == "max_class_drop" else "metric"
        raise bad(f"{at}.metric", f"unknown {what} {_show(metric)} for kind = {json.dumps(kind)} "
                                  f"{_suggest(metric, metrics)}")

    if "limit" not in c:
        raise bad(f"{at}.limit", f"missing ({_LIMIT_MEANS[kind]})")
    limit = c["limit"]
    if not _is_number(limit):
        raise bad(f"{at}.limit", f"expected a number, got {_show(limit)}")
    if not math.isfinite(limit):
        raise bad(f"{at}.limit", f"expected a finite number, got {_show(limit)}")
    if kind == "min_value" and not 0 <= limit <= 100:
        raise bad(f"{at}.limit", f"expected a percentage in [0, 100], got {_show(limit)}")

    iou_type = c.get("iou_type", "bbox")
    if not isinstance(iou_type, str) or iou_type not in IOU_TYPES:
        raise bad(f"{at}.iou_type", f"expected \"bbox\" or \"segm\" (masks), got {_show(iou_type)}")

    models = c.get("model")
    if models is not None:
        if isinstance(models, str):
            models = [models]
        if (not isinstance(models, list) or not models
                or not all(isinstance(m, str) and m.strip() for m in models)):
            raise bad(f"{at}.model", f"expected a model name or a list of names, got {_show(c['model'])}")
        models = tuple(dict.fromkeys(models))

    name = c.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad(f"{at}.name", f"expected a non-empty string, got {_show(name)}")

    min_instances = c.get("min_instances", 1)
    if not isinstance(min_instances, int) or isinstance(min_instances, bool) or min_instances < 1:
        raise bad(f"{at}.min_instances", f"expected a positive integer, got {_show(min_instances)}")
    of = c.get("of", "value")
    if of not in REGRESSION_OF:
        raise bad(f"{at}.of", f"expected \"value\" or \"drop\", got {_show(of)}")

    return Check(index=i, kind=kind, metric=metric, limit=float(limit), iou_type=iou_type, models=models,
                 min_instances=min_instances, of=of, name=name.strip() if name else None)


def load_summary(path: str | Path) -> dict:
    """A ``summary.json`` (e.g. ``--baseline FILE``) as a dict; ``InputError`` naming the file otherwise."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a summary.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise InputError(f"{path}: not a qharness summary.json (no \"models\" list)")
    return doc


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    id: str  # "check[3]"
    name: str  # the check's title
    kind: str
    model: str | None
    iou_type: str
    metric: str
    value: float | None  # in ``unit``; None when skipped
    limit: float
    unit: str  # "pts" or "%"
    passed: bool | None  # None: skipped
    ci: tuple[float, float] | None = None  # percentile CI of ``value``'s quantity
    outside_noise: bool | None = None  # limit outside the CI (None without a CI)
    reason: str | None = None  # why skipped
    detail: str | None = None  # e.g. the worst class
    reference: str | None = None  # the float reference the drop is measured against

    @property
    def status(self) -> str:
        return "skipped" if self.passed is None else "passed" if self.passed else "failed"

    @property
    def op(self) -> str:
        """How value is held against limit for a pass."""
        return ">=" if self.kind == "min_value" else "<="

    def message(self, confidence: float | None = None) -> str:
        """One line: value vs limit, the CI and what it says."""
        if self.passed is None:
            return f"skipped: {self.reason}"
        if self.passed:
            rel = "<=" if self.op == "<=" else ">="
        else:
            rel = ">" if self.op == "<=" else "<"
        s = f"{self.quantity} {self.value:.2f} {self.unit} {rel} limit {_num(self.limit)} {self.unit}"
        if self.ci is not None:
            level = f"{confidence * 100:g}% " if confidence else ""
            noise = "clear of noise" if self.outside_noise else "within noise"
            s += f"; {level}CI [{self.ci[0]:.2f}, {self.ci[1]:.2f}], {noise}"
        if self.detail:
            s += f"; {self.detail}"
        return s

    @property
    def quantity(self) -> str:
        return {"max_drop": "drop", "max_class_drop": "worst class drop", "min_value": "value",
                "max_regression": "regression"}[self.kind]

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "model": self.model,
                "reference": self.reference, "iou_type": self.iou_type, "metric": self.metric,
                "value": self.value, "limit": self.limit, "unit": self.unit, "op": self.op,
                "status": self.status, "passed": self.passed,
                "ci": list(self.ci) if self.ci is not None else None, "outside_noise": self.outside_noise,
                "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    passed: bool  # every non-skipped check passed
    results: tuple[CheckResult, ...]
    confidence: float | None = None  # of the CIs (None: no samples given)
    resamples: int | None = None  # B of the samples used
    gate: str | None = None  # the gate file
    name: str | None = None  # the gate's name

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def counts(self) -> dict[str, int]:
        c = {"passed": 0, "failed": 0, "skipped": 0}
        for r in self.results:
            c[r.status] += 1
        return c

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.passed is False)

    @property
    def headline(self) -> str:
        """``Gate PASSED: 5 checks passed, 1 skipped`` / ``Gate FAILED: 1 of 6 checks failed (...)``."""
        c = self.counts
        n = c["passed"] + c["failed"]
        skipped = f", {c['skipped']} skipped" if c["skipped"] else ""
        if self.passed:
            if n == 0:
                return f"Gate PASSED: no check applied{skipped}"
            return f"Gate PASSED: {c['passed']} check{'s' if c['passed'] != 1 else ''} passed{skipped}"
        names = "; ".join(f"{r.id} {r.name}, {r.model}" for r in self.failed[:3])
        names = "".join(ch if ch.isprintable() else "?" for ch in names)  # user-given names reach terminals
        more = f"; +{len(self.failed) - 3} more" if len(self.failed) > 3 else ""
        return f"Gate FAILED: {c['failed']} of {n} checks failed ({names}{more}){skipped}"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "exit_code": self.exit_code, "status": "passed" if self.passed else "failed",
                "gate": self.gate, "name": self.name, "confidence": self.confidence, "resamples": self.resamples,
                "counts": self.counts, "headline": self.headline,
                "results": [{**r.to_dict(), "message": r.message(self.confidence)} for r in self.results]}


# ---------------------------------------------------------------------------------------------- evaluation


def _num(x: float) -> str:
    return f"{x:g}"


def _r4(x: float) -> float:
    return round(float(x), 4)


def _metrics_of(model: Mapping | None, iou: str) -> Mapping | None:
    if model is None:
        return None
    m = model.get("metrics") or {}
    return m.get(iou)


def _scalar(model: Mapping | None, iou: str, metric: str) -> float | None:
    m = _metrics_of(model, iou)
    if m is None:
        return None
    v = m.get(metric)
    return float(v) if _is_number(v) and math.isfinite(v) else None


def _drop(summary: Mapping, delta: Mapping, iou: str, metric: str) -> float | None:
    """``reference - model`` in points, from the delta row when it has the metric, else from the models."""
    dm = (delta.get("metrics") or {}).get(iou)
    if dm is not None and metric in dm:
        v = dm[metric]
        return _r4(-v) if _is_number(v) and math.isfinite(v) else None
    models = {m["name"]: m for m in summary["models"]}
    a = _scalar(models.get(delta["reference"]), iou, metric)
    b = _scalar(models.get(delta["model"]), iou, metric)
    return None if a is None or b is None else _r4(100 * (a - b))


def _class_drops(summary: Mapping, delta: Mapping, iou: str, metric: str) -> list[tuple[int, str, int, float]]:
    """(category_id, name, n_gt, drop in points) for the classes where the drop is defined."""
    out = []
    dm = (delta.get("metrics") or {}).get(iou) or {}
    rows = dm.get("per_class")
    if isinstance(rows, list):
        for r in rows:
            v = r.get("d" + metric)
            if _is_number(v) and math.isfinite(v):
                out.append((int(r["category_id"]), str(r.get("name", r["category_id"])), int(r.get("n_gt") or 0),
                            _r4(-v)))
        return sorted(out)
    models = {m["name"]: m for m in summary["models"]}
    ref = (_metrics_of(models.get(delta["reference"]), iou) or {}).get("per_class") or {}
    mod = (_metrics_of(models.get(delta["model"]), iou) or {}).get("per_class") or {}
    for cid, a in ref.items():
        b = mod.get(cid)
        if b is None:
            continue
        x, y = a.get(metric), b.get(metric)
        if _is_number(x) and _is_number(y) and math.isfinite(x) and math.isfinite(y):
            out.append((int(cid), str(a.get("name", cid)), int(a.get("n_gt") or 0), _r4(100 * (x - y))))
    return sorted(out)


def _sample(samples: Mapping | None, model: str, iou: str, metric: str) -> np.ndarray | None:
    if samples is None:
        return None
    v = ((samples.get(model) or {}).get(iou) or {}).get(metric)
    return None if v is None else np.asarray(v, dtype=np.float64).ravel()


def _own_sample(samples: Mapping | None, model: str, iou: str, metric: str, compared: bool) -> np.ndarray | None:
    """Samples of the model's own value: a compared model's ``mean_recall`` samples are paired, not its own."""
    if metric == "mean_recall" and compared:
        return _sample(samples, model, iou, "mean_recall_own")
    return _sample(samples, model, iou, metric)


def _class_sample(samples: Mapping | None, model: str, iou: str, cid: int, metric: str) -> np.ndarray | None:
    if samples is None:
        return None
    pc = ((samples.get(model) or {}).get(iou) or {}).get("per_class") or {}
    row = pc.get(cid, pc.get(str(cid)))
    v = None if row is None else row.get(metric)
    return None if v is None else np.asarray(v, dtype=np.float64).ravel()


def _paired(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"bootstrap samples are not paired: {what} have {a.size} and {b.size} resamples")


def percentile_ci(x: np.ndarray | Sequence[float], confidence: float) -> tuple[float, float] | None:
    """Two-sided percentile interval of the finite values of ``x`` (None when there are none)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(a, [alpha, 1.0 - alpha])
    return _r4(lo), _r4(hi)


def evaluate_gate(gate: Gate, summary: Mapping, *, baseline: Mapping | None = None,
                  samples: Mapping | None = None) -> Verdict:
    """Every check of ``gate`` on ``summary`` (a summary.json dict).

    ``baseline``: another summary.json dict (the last accepted run) for ``max_regression`` checks.
    ``samples``: bootstrap resamples (module docstring) for the CIs; None: no CIs.
    A ``model`` the gate names that is not in the run is an ``InputError`` (the gate does not fit the run).
    """
    models = {m["name"]: m for m in summary.get("models", [])}
    deltas = {d["model"]: d for d in summary.get("deltas", []) or []}
    compared = list(deltas) or list(models)
    conf = gate.bootstrap.confidence
    results: list[CheckResult] = []
    for check in gate.checks:
        if check.models is not None:
            for name in check.models:
                if name not in models:
                    raise InputError(f"{gate.path}: {check.id}.model: no model named {json.dumps(name)} in this run "
                                     f"(models: {', '.join(models) or 'none'})")
                if check.kind == "max_drop" or check.kind == "max_class_drop" or check.of == "drop":
                    if name not in deltas and deltas:
                        raise InputError(f"{gate.path}: {check.id}.model: {json.dumps(name)} is the float reference; "
                                         f"drops are measured for the compared models ({', '.join(deltas)})")
            targets = list(check.models)
        else:
            targets = compared
        for name in targets:
            results.append(_evaluate(check, name, summary, models, deltas, baseline, samples, conf))
    used = _resamples(samples)
    return Verdict(passed=all(r.passed is not False for r in results), results=tuple(results),
                   confidence=conf if used else None, resamples=used, gate=gate.path, name=gate.name)


def _resamples(samples: Mapping | None) -> int | None:
    """B of the first sample array found (None without samples)."""
    if not samples:
        return None
    stack: list[Any] = [samples]
    while stack:
        x = stack.pop()
        if isinstance(x, Mapping):
            stack.extend(x[k] for k in sorted(x, key=str, reverse=True))
        elif x is not None:
            return int(np.asarray(x).size)
    return None


def _evaluate(check: Check, name: str, summary: Mapping, models: Mapping, deltas: Mapping,
              baseline: Mapping | None, samples: Mapping | None, conf: float) -> CheckResult:
    base = dict(id=check.id, name=check.description, kind=check.kind, model=name, iou_type=check.iou_type,
                metric=check.metric, limit=check.limit, unit=check.unit)
    iou, metric = check.iou_type, check.metric
    what = "masks (segm)" if iou == "segm" else "boxes (bbox)"

    def skipped(reason: str, **kw) -> CheckResult:
        return CheckResult(value=None, passed=None, reason=reason, **base, **kw)

    def done(value: float, stat: np.ndarray | None, detail: str | None = None, **kw) -> CheckResult:
        passed = value >= check.limit if check.kind == "min_value" else value <= check.limit
        ci = percentile_ci(stat, conf) if stat is not None else None
        outside = None if ci is None else not (ci[0] <= check.limit <= ci[1])
        return CheckResult(value=value, passed=bool(passed), ci=ci, outside_noise=outside, detail=detail,
                           **base, **kw)

    def drop_samples(delta: Mapping) -> np.ndarray | None:
        ref = delta["reference"]
        a = _sample(samples, ref, iou, metric)
        b = _sample(samples, name, iou, metric)  # a compared model's mean_recall samples are the paired ones
        if a is None or b is None:
            return None
        _paired(a, b, f"{ref} and {name} {iou} {metric}")
        return 100.0 * (a - b)

    needs_delta = check.kind in ("max_drop", "max_class_drop") or (check.kind == "max_regression"
                                                                    and check.of == "drop")
    delta = deltas.get(name)
    if needs_delta and delta is None:
        return skipped("no float reference in this run to measure a drop against")
    ref = delta["reference"] if delta is not None else None
    if ref is not None and needs_delta:
        base["reference"] = ref
    model = models.get(name)

    if needs_delta:
        for who in (ref, name):
            if _metrics_of(models.get(who), iou) is None:
                return skipped(f"{who} has no {what} metrics")

    if check.kind == "max_drop":
        value = _drop(summary, delta, iou, metric)
        if value is None:
            return skipped(f"{metric} ({iou}) is undefined for {name} or {ref}")
        return done(value, drop_samples(delta))

    if check.kind == "max_class_drop":
        rows = _class_drops(summary, delta, iou, metric)
        eligible = [r for r in rows if r[2] >= check.min_instances]
        if not eligible:
            return skipped(f"no class with >= {check.min_instances} ground-truth instances and a defined "
                           f"{metric} ({len(rows)} classes with a defined drop)")
        worst = max(eligible, key=lambda r: (r[3], -r[0]))
        value = worst[3]
        over = [r for r in sorted(eligible, key=lambda r: (-r[3], r[0])) if r[3] > check.limit]
        detail = f"worst: {worst[1]} (id {worst[0]}, {worst[2]} instances) {worst[3]:.2f} pts"
        if over:
            detail += "; over the limit: " + ", ".join(f"{r[1]} {r[3]:.2f}" for r in over)
        detail += f"; {len(eligible)} of {len(rows)} classes eligible"
        stat = None
        per = []
        for cid, _, _, _ in eligible:
            a = _class_sample(samples, ref, iou, cid, metric)
            b = _class_sample(samples, name, iou, cid, metric)
            if a is None or b is None:
                per = None
                break
            _paired(a, b, f"{ref} and {name} class {cid} {metric}")
            per.append(100.0 * (a - b))
        if per:
            mat = np.vstack(per)
            ok = np.isfinite(mat).any(axis=0)
            stat = np.full(mat.shape[1], np.nan)
            stat[ok] = np.nanmax(mat[:, ok], axis=0)
        return done(value, stat, detail)

    if check.kind == "min_value":
        v = _scalar(model, iou, metric)
        if v is None:
            if _metrics_of(model, iou) is None:
                return skipped(f"{name} has no {what} metrics")
            return skipped(f"{metric} ({iou}) is undefined for {name}")
        s = _own_sample(samples, name, iou, metric, name in deltas)
        return done(_r4(100 * v), None if s is None else 100.0 * s)

    # max_regression
    if baseline is None:
        return skipped("no baseline given")
    bmodels = {m["name"]: m for m in baseline.get("models", [])}
    why = _incompatible(summary, baseline)
    if why:
        return skipped(why)
    if name not in bmodels:
        return skipped(f"the baseline has no model named {name}")
    if check.of == "value":
        b = _scalar(bmodels[name], iou, metric)
        c = _scalar(model, iou, metric)
        if b is None or c is None:
            where = "the baseline" if b is None else "this run"
            return skipped(f"{metric} ({iou}) is undefined for {name} in {where}")
        s = _own_sample(samples, name, iou, metric, name in deltas)
        detail = f"baseline {100 * b:.2f} %, now {100 * c:.2f} %"
        return done(_r4(100 * (b - c)), None if s is None else 100.0 * (b - s), detail)
    bdelta = {d["model"]: d for d in baseline.get("deltas", []) or []}.get(name)
    if bdelta is None or bdelta["reference"] != ref:
        return skipped(f"the baseline has no drop of {name} vs {ref}")
    cur = _drop(summary, delta, iou, metric)
    old = _drop(baseline, bdelta, iou, metric)
    if cur is None or old is None:
        where = "the baseline" if old is None else "this run"
        return skipped(f"{metric} ({iou}) drop is undefined for {name} in {where}")
    s = drop_samples(delta)
    detail = f"drop vs {ref}: baseline {old:.2f} pts, now {cur:.2f} pts"
    return done(_r4(cur - old), None if s is None else s - old, detail)


def _incompatible(summary: Mapping, baseline: Mapping) -> str | None:
    """Why ``baseline`` cannot be compared with ``summary`` (another dataset or metric), else None."""
    a = (summary.get("dataset") or {}).get("sha256")
    b = (baseline.get("dataset") or {}).get("sha256")
    if a and b and a != b:
        return f"the baseline was measured on another dataset (sha256 {b[:12]}, this run {a[:12]})"
    if summary.get("metric") and baseline.get("metric") and summary["metric"] != baseline["metric"]:
        return f"the baseline was measured with --metric {baseline['metric']}, this run {summary['metric']}"
    return None


# ---------------------------------------------------------------------------------------------- rendering

_XML_BAD = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(s: Any) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup; characters XML cannot carry become '?')."""
    return _XML_BAD.sub("?", str(s))


def junit_xml(verdict: Verdict, suite_name: str) -> str:
    """JUnit XML: one ``<testcase>`` per check result (classname = model, name = the check), deterministic."""
    c = verdict.counts
    attrs = {"name": _x(suite_name), "tests": str(len(verdict.results)), "failures": str(c["failed"]),
             "errors": "0", "skipped": str(c["skipped"]), "time": "0"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    for k, v in (("gate", verdict.gate), ("verdict", "passed" if verdict.passed else "failed"),
                 ("confidence", verdict.confidence), ("resamples", verdict.resamples)):
        if v is not None:
            ET.SubElement(props, "property", {"name": k, "value": _x(v)})
    for r in verdict.results:
        case = ET.SubElement(suite, "testcase", {"classname": _x(r.model or "gate"), "name": _x(f"{r.id}: {r.name}"),
                                                 "time": "0"})
        msg = _x(r.message(verdict.confidence))
        if r.passed is None:
            ET.SubElement(case, "skipped", {"message": _x(r.reason)})
        elif not r.passed:
            fail = ET.SubElement(case, "failure", {"message": msg, "type": r.kind})
            fail.text = msg
        out = ET.SubElement(case, "system-out")
        out.text = msg
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(s: Any) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown(verdict: Verdict) -> str:
    """The checks as a markdown table and the verdict line (GITHUB_STEP_SUMMARY, the HTML report)."""
    level = f"{verdict.confidence * 100:g}% CI" if verdict.confidence else "CI"
    lines = [f"**{_md(verdict.headline)}**", ""]
    if verdict.name or verdict.gate:
        lines += [f"Gate: {_md(verdict.name or '')}{', ' if verdict.name and verdict.gate else ''}"
                  f"{'`' + _md(verdict.gate) + '`' if verdict.gate else ''}"
                  + (f", {verdict.resamples} bootstrap resamples" if verdict.resamples else ""), ""]
    lines += [f"| Check | Model | Value | Limit | {level} | Result |", "|---|---|---:|---:|---:|---|"]
    for r in verdict.results:
        check = f"{r.id} {_md(r.name)}"
        if r.passed is None:
            lines.append(f"| {check} | {_md(r.model)} | n/a | {r.op} {_num(r.limit)} {r.unit} | n/a "
                         f"| skipped: {_md(r.reason)} |")
            continue
        ci = f"{r.ci[0]:.2f} to {r.ci[1]:.2f}" if r.ci is not None else "n/a"
        if r.passed:
            res = "pass" if r.outside_noise is not False else "pass (within noise)"
        else:
            res = "**FAIL**" if r.outside_noise is not False else "**FAIL** (within noise)"
        if r.detail and r.kind == "max_class_drop":
            res += f": {_md(r.detail.split(';')[0])}"
        lines.append(f"| {check} | {_md(r.model)} | {r.value:.2f} {r.unit} | {r.op} {_num(r.limit)} {r.unit} "
                     f"| {ci} | {res} |")
    return "\n".join(lines) + "\n"
