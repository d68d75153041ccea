"""Decode TF-OD-API postprocessed (SSD-style) outputs of one image into detections.

The model already ran its NMS: boxes [1,K,4] as ymin, xmin, ymax, xmax (normalised), classes [1,K],
scores [1,K], count [1]. Only the first ``count`` rows are valid; they are filtered by ``conf``, capped
at ``max_det`` and mapped to canvas pixels (x1, y1, x2, y2).

Classes and scores have the same shape, so the contract can only order them provisionally when both
are float tensors; each image's values settle it: class labels are whole numbers, scores lie in
[0, 1]. Roles are swapped only on proof (a non-integral "class", or a "score" above 1 with an integral
partner); otherwise the contract's assignment stands.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .contract import BoxUnits, Contract, ContractKind
from .yolo import RawDetections


def _classes_scores(contract: Contract, outputs: Mapping[str, np.ndarray], n: int):
    classes = np.asarray(outputs[contract.roles["classes"]]).reshape(-1)[:n]
    scores = np.asarray(outputs[contract.roles["scores"]]).reshape(-1)[:n]
    cls_integral = bool(np.all(classes == np.rint(classes)))
    score_integral = bool(np.all(scores == np.rint(scores)))
    if not cls_integral and score_integral:
        return scores, classes
    if cls_integral and score_integral and scores.size and scores.max() > 1 >= classes.max():
        return scores, classes
    return classes, scores


def decode(
    contract: Contract,
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int],
    *,
    conf: float = 0.001,
    max_det: int = 300,
    box_units: str = "normalized",
) -> RawDetections:
    """Raw outputs of one image -> :class:`RawDetections` in canvas pixels (no NMS: the model did it).

    Class indices are the model's labels plus ``contract.class_offset``.
    """
    if contract.kind is not ContractKind.SSD:
        raise ValueError(f"not an SSD contract: {contract.kind.value}")
    units = BoxUnits(box_units)
    if units is BoxUnits.AUTO:
        units = BoxUnits.NORMALIZED  # SSD boxes are normalised by definition
    boxes_yx = np.asarray(outputs[contract.roles["boxes"]]).reshape(-1, 4)
    k = len(boxes_yx)
    n = k
    if "count" in contract.roles:
        count = float(np.asarray(outputs[contract.roles["count"]]).reshape(-1)[0])
        n = int(np.clip(count, 0, k)) if np.isfinite(count) else 0
    classes, scores = _classes_scores(contract, outputs, n)
    valid = np.flatnonzero(scores > conf)
    if valid.size == 0:
        return RawDetections.empty()
    valid = valid[np.argsort(-scores[valid], kind="stable")][:max(max_det, 0)]
    b = boxes_yx[valid].astype(np.float32)
    boxes = b[:, [1, 0, 3, 2]]  # yxyx -> xyxy
    if units is BoxUnits.NORMALIZED:
        in_h, in_w = input_hw
        boxes *= np.array([in_w, in_h, in_w, in_h], dtype=np.float32)
    labels = np.rint(classes[valid]).astype(np.int64) + contract.class_offset
    return RawDetections(np.ascontiguousarray(boxes), scores[valid].astype(np.float32), labels)
