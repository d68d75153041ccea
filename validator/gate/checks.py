"""What a gate's checks measure, how each is judged, and the verdict (pure functions over summary.json dicts).

``evaluate_gate`` turns a summary (plus optional earlier runs to compare with and optional bootstrap
resamples) into a :class:`Verdict`; nothing here runs a model or re-evaluates COCO. The gate file is
:mod:`validator.gate.spec`, the resamples :mod:`validator.gate.intervals`, the rendering
:mod:`validator.gate.render`.

Kinds and what they measure (``value`` is what is compared with ``limit``):

- ``max_drop``: ``reference - model`` in points, fails when ``value > limit``. Read from
  ``summary["deltas"]`` (``mean_recall`` there is the paired one: both models at the reference's
  F1-optimal confidence), else from the two models' metrics. Metrics: ``METRICS``.
- ``max_class_drop``: every class is judged by its own bootstrap interval: a class fails when its drop
  (``AP50`` or ``AP50_95``) is past ``limit`` *and* its interval lies past it too (clear of its own noise),
  so the check works at any dataset size, with no instance cutoff deciding which classes count. Classes
  with fewer than ``min_instances`` ground-truth instances (default 1) or without an interval are listed as
  too small to judge, with their drops, and a class that dropped more than the worst judged one is named
  even then. Without resamples a class fails when its drop is past the limit. ``value`` is the largest
  judged drop.
- ``min_value``: ``100 * metric`` of the model, fails when ``value < limit``. ``model`` may name the float
  reference too.
- ``max_regression``: ``100 * (earlier - current)`` of the same model (matched by name) in points, or with
  ``of = "drop"`` the growth of its drop vs the float reference; fails when ``value > limit``. ``against``
  picks the earlier run: ``baseline`` (``--baseline``: a summary.json, or the last accepted run of the
  history: the nightly step, which catches a sudden regression) or ``pinned`` (the run a person accepted
  with ``validate history accept RUN``: the cumulative drift since, which catches a slow one that passes
  every nightly step). Skipped when there is no such run ("no accepted run yet", "no pinned reference
  yet"), it lacks the model, or it was measured on another dataset or ``--metric``.

A check applies to every compared model (each ``summary["deltas"][j]["model"]``; in a one-model run, every
model) unless ``model`` names some; each (check, model) pair is one result, one JUnit testcase. A check
whose quantity is undefined in this run (masks of a detection model, no earlier run) is *skipped* with the
reason, never failed.

Bootstrap confidence intervals
==============================

The caller resamples images (``gate.bootstrap``: B resamples, seed) and passes the metric recomputed on
each resample; the same resampled image sets for every model, so model differences are paired::

    samples[model_name][iou_type][metric] -> np.ndarray (B,)      # fractions; NaN where undefined
    samples[model_name][iou_type]["per_class"][cat_id]["AP50" | "AP50_95"] -> (B,)   # cat_id int or str

(:func:`validator.gate.intervals.samples_for`). ``mean_recall`` of a compared model is its recall at the
reference's F1-optimal confidence of the same resample (paired, like the Mean Recall delta), the
reference's at its own optimum. A compared model's recall at its own optimum (what ``min_value`` and
``max_regression`` of ``mean_recall`` check) is optional, under ``"mean_recall_own"``; without it those
two checks get no CI.

Each check's CI is the percentile interval, at ``confidence``, of its own quantity computed per resample
(e.g. ``100 * (float - int8)`` for a drop; against an earlier run, that run's value is held fixed).
``outside_noise`` says whether ``limit`` lies outside the CI: a pass or a failure "clear of noise" would
not change on another draw of the images; "within noise" would. Except for ``max_class_drop`` (above), a
check passes or fails on ``value`` vs ``limit`` alone. Missing samples give ``ci = None``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from validator.errors import InputError
from validator.gate.spec import Check, Gate, _is_number, _num


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
    classes: tuple[ClassJudgement, ...] = ()  # max_class_drop: every class with a defined drop, worst first

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
        if self.kind == "max_class_drop":
            return self._class_message(confidence)
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

    def _class_message(self, confidence: float | None) -> str:
        level = f"{confidence * 100:g}% " if confidence else ""
        failed = [c for c in self.classes if c.status == "failed"]
        noise = " clear of its noise" if any(c.ci is not None for c in self.classes) else ""
        if failed:
            s = (f"{len(failed)} class{'es' if len(failed) != 1 else ''} past the limit {_num(self.limit)} pts"
                 f"{noise}: " + ", ".join(c.describe(level) for c in failed[:5]))
        else:
            judged = [c for c in self.classes if c.status != "too small"]
            worst = f"; worst: {judged[0].describe(level)}" if judged else ""
            s = f"no class past the limit {_num(self.limit)} pts{noise}{worst}"
        over = [c for c in self.classes if c.status == "within noise"]
        if over:
            s += "; past the limit but within noise: " + ", ".join(c.describe(level) for c in over[:5])
        small = [c for c in self.classes if c.status == "too small"]
        if small:
            s += f"; too small to judge ({len(small)}): " + ", ".join(c.describe(level) for c in small[:5])
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
                "reason": self.reason, "detail": self.detail,
                **({"classes": [c.to_dict() for c in self.classes]} if self.kind == "max_class_drop" else {})}


@dataclass(frozen=True)
class ClassJudgement:
    """One class of a ``max_class_drop`` check: its drop, its own interval and what that says."""

    category_id: int
    name: str
    n_gt: int
    drop: float  # points
    ci: tuple[float, float] | None
    status: str  # "failed" | "within noise" (past the limit, CI holds it) | "passed" | "too small"
    reason: str | None = None  # why too small to judge

    def describe(self, level: str = "") -> str:
        ci = f", {level}CI [{self.ci[0]:.2f}, {self.ci[1]:.2f}]" if self.ci is not None else ""
        why = f", {self.reason}" if self.reason else ""
        return f"{self.name} {self.drop:.2f} pts ({self.n_gt} instances{ci}{why})"

    def to_dict(self) -> dict:
        return {"category_id": self.category_id, "name": self.name, "n_gt": self.n_gt, "drop": self.drop,
                "ci": list(self.ci) if self.ci is not None else None, "status": self.status, "reason": self.reason}


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


NO_BASELINE = "no baseline given (--baseline SUMMARY.json or last-accepted)"
NO_PINNED = "no pinned reference (accept a run with: validate history accept RUN --db HISTORY)"


def evaluate_gate(gate: Gate, summary: Mapping, *, baseline: Mapping | str | None = None,
                  pinned: Mapping | str | None = None, samples: Mapping | None = None) -> Verdict:
    """Every check of ``gate`` on ``summary`` (a summary.json dict).

    ``baseline``: the earlier summary.json dict ``max_regression`` checks compare with (``--baseline``: a
    file, or the last accepted run); ``pinned``: the run a person accepted (``against = "pinned"``). Either
    may be a string saying why there is none ("no accepted run yet"): the checks needing it are skipped
    with it. ``samples``: bootstrap resamples (module docstring) for the CIs; None: no CIs.
    A ``model`` the gate names that is not in the run is an ``InputError`` (the gate does not fit the run).
    """
    earlier = {"baseline": NO_BASELINE if baseline is None else baseline,
               "pinned": NO_PINNED if pinned is None else pinned}
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
            results.append(_evaluate(check, name, summary, models, deltas, earlier[check.against], samples, conf))
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
              baseline: Mapping | str, samples: Mapping | None, conf: float) -> CheckResult:
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
        return _class_check(check, base, summary, delta, ref, name, samples, conf)

    if check.kind == "min_value":
        v = _scalar(model, iou, metric)
        if v is None:
            if _metrics_of(model, iou) is None:
                return skipped(f"{name} has no {what} metrics")
            return skipped(f"{metric} ({iou}) is undefined for {name}")
        s = _own_sample(samples, name, iou, metric, name in deltas)
        return done(_r4(100 * v), None if s is None else 100.0 * s)

    # max_regression (``baseline`` is the earlier run this check is against: a summary or why there is none)
    if not isinstance(baseline, Mapping):
        return skipped(str(baseline))
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
        since = "pinned reference" if check.against == "pinned" else "baseline"
        detail = f"{since} {100 * b:.2f} %, now {100 * c:.2f} %"
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
    since = "pinned reference" if check.against == "pinned" else "baseline"
    detail = f"drop vs {ref}: {since} {old:.2f} pts, now {cur:.2f} pts"
    return done(_r4(cur - old), None if s is None else s - old, detail)


def _class_check(check: Check, base: dict, summary: Mapping, delta: Mapping, ref: str, name: str,
                 samples: Mapping | None, conf: float) -> CheckResult:
    """Every class judged by its own interval (module docstring); the worst judged drop is the value."""
    iou, metric = check.iou_type, check.metric
    rows = _class_drops(summary, delta, iou, metric)
    if not rows:
        return CheckResult(value=None, passed=None, reason=f"no class with a defined {metric} drop", **base)
    judged: list[ClassJudgement] = []
    for cid, cname, n_gt, drop in rows:
        ci = None
        a = _class_sample(samples, ref, iou, cid, metric)
        b = _class_sample(samples, name, iou, cid, metric)
        if a is not None and b is not None:
            _paired(a, b, f"{ref} and {name} class {cid} {metric}")
            ci = percentile_ci(100.0 * (a - b), conf)
        if n_gt < check.min_instances:
            status, why = "too small", f"fewer than min_instances = {check.min_instances}"
        elif samples is not None and ci is None:
            status, why = "too small", "no interval (undefined on every resample)"
        elif drop > check.limit:
            status, why = ("within noise" if ci is not None and ci[0] <= check.limit else "failed"), None
        else:
            status, why = "passed", None
        judged.append(ClassJudgement(cid, cname, n_gt, drop, ci, status, why))
    judged.sort(key=lambda c: (-c.drop, c.category_id))
    counted = [c for c in judged if c.status != "too small"]
    failed = [c for c in judged if c.status == "failed"]
    if not counted:
        return CheckResult(value=None, passed=None, classes=tuple(judged),
                           reason=f"every class too small to judge ({len(judged)} classes: fewer than "
                                  f"{check.min_instances} instances or no interval)", **base)
    worst = counted[0]
    detail = None
    if judged[0].status == "too small" and judged[0].drop > worst.drop:
        detail = (f"largest drop of all is {judged[0].name} {judged[0].drop:.2f} pts, too small to judge "
                  f"({judged[0].reason})")
    ci = worst.ci if not failed else failed[0].ci
    value = failed[0].drop if failed else worst.drop
    outside = None if ci is None else not (ci[0] <= check.limit <= ci[1])
    return CheckResult(value=value, passed=not failed, ci=ci, outside_noise=outside, detail=detail,
                       classes=tuple(judged), **base)


def _incompatible(summary: Mapping, baseline: Mapping) -> str | None:
    """Why ``baseline`` cannot be compared with ``summary`` (another dataset or metric), else None."""
    a = (summary.get("dataset") or {}).get("sha256")
    b = (baseline.get("dataset") or {}).get("sha256")
    if a and b and a != b:
        return f"the baseline was measured on another dataset (sha256 {b[:12]}, this run {a[:12]})"
    if summary.get("metric") and baseline.get("metric") and summary["metric"] != baseline["metric"]:
        return f"the baseline was measured with --metric {baseline['metric']}, this run {summary['metric']}"
    return None

