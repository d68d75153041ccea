"""The nightly gate: checks as data, a verdict with bootstrap intervals, JUnit/markdown, the run history.

Modules: :mod:`~validator.gate.spec` (the gate file), :mod:`~validator.gate.checks` (what each check
measures and the verdict), :mod:`~validator.gate.intervals` (paired image resamples and their metrics,
computed by :mod:`~validator.gate.resampled_coco` from the evaluation's own matches),
:mod:`~validator.gate.render` (JUnit XML, markdown), :mod:`~validator.gate.history` (SQLite: every run, the
last accepted one, the pinned reference, trends) and :mod:`~validator.gate.nightly` (how a run uses them).
"""

from validator.gate.checks import (
    CheckResult,
    ClassJudgement,
    Verdict,
    evaluate_gate,
    percentile_ci,
)
from validator.gate.render import junit_xml, markdown
from validator.gate.spec import (
    CLASS_METRICS,
    IOU_TYPES,
    KINDS,
    METRICS,
    MIN_RESAMPLES,
    Bootstrap,
    Check,
    Gate,
    gate_from_dict,
    load_gate,
    load_summary,
)

__all__ = ["CLASS_METRICS", "IOU_TYPES", "KINDS", "METRICS", "MIN_RESAMPLES", "Bootstrap", "Check",
           "CheckResult", "ClassJudgement", "Gate", "Verdict", "evaluate_gate", "gate_from_dict", "junit_xml",
           "load_gate", "load_summary", "markdown", "percentile_ci"]
