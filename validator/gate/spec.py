"""The gate file: checks as data (TOML), read and validated before any work.

``load_gate`` reads a file into a :class:`Gate` (its checks and bootstrap settings); every problem is one
``InputError`` naming the file and the key. What a check measures and how it is judged is
:mod:`validator.gate.checks`; the intervals, :mod:`validator.gate.intervals`.

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
    kind = "max_class_drop"                # every class, each judged by its own interval
    metric = "AP50_95"                     # per-class metric: "AP50" or "AP50_95"
    limit = 12.0                           # a class fails when its drop is > 12 pts, clear of its noise
    min_instances = 1                      # optional: classes with fewer GT instances are listed, not judged

    [[check]]                              # check[3]
    kind = "min_value"                     # the model's own value, in percent
    metric = "mAP50"
    limit = 40.0                           # fails when mAP50 < 40 %

    [[check]]                              # check[4]
    kind = "max_regression"                # vs an earlier run of the same models and data
    metric = "mAP50_95"
    limit = 1.0                            # fails when the model lost > 1 pt since then
    of = "value"                           # optional: "value" (the model's own metric, default) or
                                           # "drop" (its drop vs the float reference grew by > limit)
    against = "baseline"                   # optional: "baseline" (--baseline: a summary.json or the
                                           # last accepted run, the nightly step) or "pinned" (the run a
                                           # person accepted: `validate history accept RUN`, cumulative drift)

Checks are numbered from 1 in file order (``check[1]`` is the first ``[[check]]`` table); error messages
name them so.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
AGAINST = ("baseline", "pinned")
MIN_RESAMPLES = 200

_TOP_KEYS = ("name", "bootstrap", "check")
_BOOTSTRAP_KEYS = ("resamples", "seed", "confidence")
_COMMON_KEYS = ("kind", "metric", "limit", "iou_type", "model", "name")
_KIND_KEYS = {"max_drop": (), "max_class_drop": ("min_instances",), "min_value": (),
              "max_regression": ("of", "against")}
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
    against: str = "baseline"  # max_regression only: the --baseline run, or the pinned reference
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
            return f"every class's {what} drop <= {lim} (clear of its own noise)"
        if self.kind == "min_value":
            return f"{what} >= {lim}"
        since = "the pinned reference" if self.against == "pinned" else "baseline"
        if self.of == "drop":
            return f"{what} drop vs float, growth since {since} <= {lim}"
        return f"{what} regression vs {since} <= {lim}"

    def to_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "metric": self.metric, "iou_type": self.iou_type,
             "limit": self.limit, "unit": self.unit, "models": list(self.models) if self.models else None,
             "name": self.description}
        if self.kind == "max_class_drop":
            d["min_instances"] = self.min_instances
        if self.kind == "max_regression":
            d["of"] = self.of
            d["against"] = self.against
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


def _num(x: float) -> str:
    return f"{x:g}"


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
    against = c.get("against", "baseline")
    if against not in AGAINST:
        raise bad(f"{at}.against", f"expected \"baseline\" or \"pinned\", got {_show(against)}")

    return Check(index=i, kind=kind, metric=metric, limit=float(limit), iou_type=iou_type, models=models,
                 min_instances=min_instances, of=of, against=against, name=name.strip() if name else None)


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
