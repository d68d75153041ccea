"""Detection metrics: COCO evaluation (pycocotools or faster-coco-eval), Mean Recall at the F1-optimal
confidence, and an Ultralytics-compatible reading (``--metric compat``) for lining up with published tables.
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
    "f1_operating_point",
    "load_gt",
]
