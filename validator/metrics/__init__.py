"""Detection metrics: COCO evaluation (pycocotools or faster-coco-eval), Mean Recall at the F1-optimal
confidence, and the readings of Ultralytics ``val`` (``--metric compat``) and EdgeFirst's validator
(``--metric edgefirst``) for lining up with published tables.
"""

from __future__ import annotations

from validator.metrics.cocoeval import (
    STAT_NAMES,
    Backend,
    CocoResult,
    IouType,
    Metric,
    evaluate,
    load_gt,
)
from validator.metrics.compat import evaluate_compat
from validator.metrics.edgefirst import evaluate_edgefirst
from validator.metrics.recall import OperatingPoint, f1_operating_point

__all__ = [
    "STAT_NAMES",
    "Backend",
    "CocoResult",
    "IouType",
    "Metric",
    "OperatingPoint",
    "evaluate",
    "evaluate_compat",
    "evaluate_edgefirst",
    "f1_operating_point",
    "load_gt",
]
