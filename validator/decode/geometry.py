"""The map between original-image and model-input (canvas) coordinates, and its inverse for boxes.

One dataclass covers both resize modes: ``--resize letterbox`` (one scale, padding) and
``--resize stretch`` (a scale per axis, no padding). Coordinates are continuous, pixel edges at
integers: original point ``x`` lands on the canvas at ``x * scale_x + pad_x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How one original image was placed on the model-input canvas of ``input_hw`` (height, width)."""

    scale_x: float
    scale_y: float
    pad_x: float  # left padding in canvas pixels
    pad_y: float  # top padding in canvas pixels
    input_hw: tuple[int, int]

    @classmethod
    def fit(cls, orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
        """Aspect-preserving letterbox: scale r = min(in_h/h, in_w/w), content resized to
        (round(w*r), round(h*r)) and centred, the odd padding pixel going right/bottom.

        The scales stored are the effective ones of the resized content (new_w / w, new_h / h): a
        resize maps pixel edges 0..w onto 0..new_w, so these are exact where r itself is off by the
        rounding of the new size (at most half a canvas pixel at the far edge).
        """
        h, w = orig_hw
        in_h, in_w = input_hw
        r = min(in_h / h, in_w / w)
        new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
        return cls(new_w / w, new_h / h, (in_w - new_w) // 2, (in_h - new_h) // 2, (in_h, in_w))

    @classmethod
    def stretch(cls, orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
        """Resize to the full canvas ignoring aspect: one scale per axis, no padding."""
        h, w = orig_hw
        in_h, in_w = input_hw
        return cls(in_w / w, in_h / h, 0.0, 0.0, (in_h, in_w))

    def to_original(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas coordinates -> original-image coordinates (not clipped)."""
        return (x - self.pad_x) / self.scale_x, (y - self.pad_y) / self.scale_y

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-image coordinates -> canvas coordinates."""
        return x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y


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
