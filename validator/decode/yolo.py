"""Decode YOLOv8/11-style outputs (monolithic, split, end-to-end) of one image into detections.

Re-implemented from the documented tensor layouts (see :mod:`.contract`), no Ultralytics code.

Choices, and how they relate to Ultralytics ``val``:

* Class scores in these exports are already sigmoid probabilities; they are used as they are.
* One class per anchor (its best class) by default. Ultralytics' detection validator runs its NMS with
  ``multi_label=True`` (every class above ``conf`` of an anchor becomes a candidate), which usually adds
  a little mAP at conf=0.001. ``multi_label=True`` here reproduces that for compat comparisons.
* Candidates are kept when ``score > conf`` (strict), at most ``max_candidates`` of them (best first)
  go to NMS, then class-aware NMS (``iou``, ``agnostic``) keeps at most ``max_det``.
* END2END outputs went through the model's own NMS: only the conf filter and ``max_det`` apply (rows from
  one ``[1,K,6]`` tensor or from split boxes ``[1,K,4]`` and scores ``[1,K,nc]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .contract import BoxUnits, Contract, ContractKind, end2end_rows, resolve_box_units
from .nms import nms

MAX_CANDIDATES = 30000  # upper bound on boxes entering NMS (as Ultralytics' max_nms)


@dataclass(frozen=True)
class RawDetections:
    """Detections of one image in model-input (letterboxed canvas) pixels, best score first.

    ``classes`` are model class indices (mapping to dataset categories happens later). ``coefs`` and
    ``protos`` (NCHW, without batch) are set for segmentation models only.
    """

    boxes: np.ndarray  # (n, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64
    coefs: np.ndarray | None = None  # (n, nm) float32
    protos: np.ndarray | None = None  # (nm, ph, pw) float32

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, num_masks: int = 0, protos: np.ndarray | None = None) -> RawDetections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
            np.zeros((0, num_masks), np.float32) if num_masks else None, protos,
        )


def _units(contract: Contract, outputs: Mapping[str, np.ndarray], input_hw, box_units) -> BoxUnits:
    units = BoxUnits(box_units)
    if units is BoxUnits.AUTO:  # per-image decision; prefer resolving once with resolve_box_units
        units = resolve_box_units(contract, outputs, input_hw)
    return units


def _protos(contract: Contract, outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    if not contract.num_masks:
        return None
    p = outputs[contract.roles["protos"]][0]
    if contract.protos_nhwc:
        p = p.transpose(2, 0, 1)
    return np.ascontiguousarray(p, dtype=np.float32)


def _rows(contract: Contract, arr: np.ndarray) -> np.ndarray:
    """A YOLO tensor [1,C,N] or [1,N,C] as [C, N] (a view)."""
    a = arr[0]
    return a.T if contract.transposed else a


def decode(
    contract: Contract,
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int],
    *,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    agnostic: bool = False,
    box_units: str = "pixels",
    multi_label: bool = False,
    max_candidates: int = MAX_CANDIDATES,
) -> RawDetections:
    """Raw (dequantized, float32, batch-1) outputs of one image -> :class:`RawDetections`.

    ``box_units`` is the resolved unit of the model's boxes ("pixels" or "normalized"; "auto" decides
    from this image alone). Normalised boxes are scaled by the canvas width/height.
    """
    if contract.kind is ContractKind.SSD:
        raise ValueError("SSD contracts are decoded by validator.decode.ssd.decode")
    units = _units(contract, outputs, input_hw, box_units)
    protos = _protos(contract, outputs)
    if contract.kind is ContractKind.END2END:
        return _end2end(contract, outputs, input_hw, conf, max_det, units, protos)

    nc, nm = contract.num_classes, contract.num_masks
    if contract.kind is ContractKind.YOLO:
        p = _rows(contract, outputs[contract.roles["preds"]])
        box_cn, score_cn = p[:4], p[4:4 + nc]
        coef_cn = p[4 + nc:4 + nc + nm] if nm else None
    else:
        box_cn = _rows(contract, outputs[contract.roles["boxes"]])
        score_cn = _rows(contract, outputs[contract.roles["scores"]])
        coef_cn = _rows(contract, outputs[contract.roles["coefs"]]) if nm else None

    if multi_label:
        cls_i, anchor_i = np.nonzero(score_cn > conf)  # class-major; restored to anchor order below
        scores = score_cn[cls_i, anchor_i]
        reorder = np.lexsort((cls_i, anchor_i))
        anchor_i, cls_i, scores = anchor_i[reorder], cls_i[reorder], scores[reorder]
    else:
        best = score_cn.argmax(axis=0)
        best_score = np.take_along_axis(score_cn, best[None], axis=0)[0]
        anchor_i = np.flatnonzero(best_score > conf)
        cls_i, scores = best[anchor_i], best_score[anchor_i]
    if anchor_i.size > max_candidates:
        top = np.argsort(-scores, kind="stable")[:max_candidates]
        top.sort()
        anchor_i, cls_i, scores = anchor_i[top], cls_i[top], scores[top]
    if anchor_i.size == 0:
        return RawDetections.empty(nm, protos)

    cx, cy, w, h = (box_cn[k, anchor_i].astype(np.float32) for k in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    if units is BoxUnits.NORMALIZED:
        in_h, in_w = input_hw
        boxes *= np.array([in_w, in_h, in_w, in_h], dtype=np.float32)

    keep = nms(boxes, scores, iou, classes=cls_i, agnostic=agnostic, max_det=max_det)
    coefs = None
    if nm:
        coefs = np.ascontiguousarray(coef_cn[:, anchor_i[keep]].T, dtype=np.float32)
    return RawDetections(
        boxes[keep], scores[keep].astype(np.float32), cls_i[keep].astype(np.int64), coefs, protos
    )


def _end2end(contract, outputs, input_hw, conf, max_det, units, protos) -> RawDetections:
    rows = end2end_rows(contract, outputs)  # one [1,K,6(+nm)] tensor, or split boxes / scores
    rows = rows[rows[:, 4] > conf]
    if len(rows) == 0:
        return RawDetections.empty(contract.num_masks, protos)
    order = np.argsort(-rows[:, 4], kind="stable")[:max(max_det, 0)]
    rows = rows[order].astype(np.float32)
    boxes = np.ascontiguousarray(rows[:, :4])
    if units is BoxUnits.NORMALIZED:
        in_h, in_w = input_hw
        boxes *= np.array([in_w, in_h, in_w, in_h], dtype=np.float32)
    coefs = np.ascontiguousarray(rows[:, 6:6 + contract.num_masks]) if contract.num_masks else None
    return RawDetections(boxes, rows[:, 4].copy(), np.rint(rows[:, 5]).astype(np.int64), coefs, protos)
