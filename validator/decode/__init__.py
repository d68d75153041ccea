"""Raw output tensors of one image -> detections in original-image coordinates.

The steps, one module each:

* :mod:`.contract` tells which output layout a model has, from tensor shapes and dtypes alone, and
  whether its boxes are in pixels or normalised;
* :mod:`.yolo` and :mod:`.ssd` turn one image's outputs into :class:`RawDetections` in model-input
  (letterboxed canvas) pixels, running :mod:`.nms` where the model did not (``nms.nms`` is not
  re-exported here, so that ``validator.decode.nms`` stays the module);
* :mod:`.geometry` undoes the letterbox (or stretch) for boxes;
* :mod:`.masks` builds instance masks from prototypes and coefficients directly on the original image
  and RLE-encodes them with pycocotools.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import ssd, yolo
from .contract import (
    BoxFormat,
    BoxUnits,
    Contract,
    ContractError,
    ContractKind,
    TensorSpec,
    anchor_counts,
    identify,
    resolve_box_units,
)
from .geometry import Letterbox, boxes_to_original
from .masks import masks_to_rles
from .yolo import RawDetections


def decode(
    contract: Contract,
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int],
    *,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    agnostic: bool = False,
    box_units: str | None = None,
    multi_label: bool = False,
) -> RawDetections:
    """Decode one image with the decoder of ``contract.kind``.

    ``box_units`` defaults to ``contract.boxes`` (resolve "auto" once with :func:`resolve_box_units` and
    ``dataclasses.replace(contract, boxes=...)``). SSD ignores iou/agnostic/multi_label: its model
    already ran NMS.
    """
    if box_units is None:
        box_units = contract.boxes
    if contract.kind is ContractKind.SSD:
        return ssd.decode(contract, outputs, input_hw, conf=conf, max_det=max_det, box_units=box_units)
    return yolo.decode(contract, outputs, input_hw, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic,
                       box_units=box_units, multi_label=multi_label)


__all__ = [
    "BoxFormat",
    "BoxUnits",
    "Contract",
    "ContractError",
    "ContractKind",
    "Letterbox",
    "RawDetections",
    "TensorSpec",
    "anchor_counts",
    "boxes_to_original",
    "decode",
    "identify",
    "masks_to_rles",
    "resolve_box_units",
]
