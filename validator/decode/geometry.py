"""Boxes from model-input (canvas) coordinates back to the original image, through the :class:`Letterbox`
(defined in :mod:`validator.tensors`, shared with the preprocessing that made the canvas)."""

from __future__ import annotations

import numpy as np

from validator.tensors import Letterbox

__all__ = ["Letterbox", "boxes_to_original"]


def boxes_to_original(
    boxes_input_xyxy: np.ndarray, letterbox: Letterbox, orig_hw: tuple[int, int], clip: bool = True
) -> np.ndarray:
    """(n, 4) xyxy boxes on the canvas -> (n, 4) float32 xyxy in the original image, clipped to it.

    ``clip=False`` keeps boxes as the model drew them (reaching into the padding or past the image), which
    is how Ultralytics ``val`` matches them (``--metric compat``).
    """
    b = np.asarray(boxes_input_xyxy, dtype=np.float64).reshape(-1, 4)
    h, w = orig_hw
    x1, y1 = letterbox.to_original(b[:, 0], b[:, 1])
    x2, y2 = letterbox.to_original(b[:, 2], b[:, 3])
    if not clip:
        return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    out = np.stack([np.clip(x1, 0, w), np.clip(y1, 0, h), np.clip(x2, 0, w), np.clip(y2, 0, h)], axis=1)
    return out.astype(np.float32)
