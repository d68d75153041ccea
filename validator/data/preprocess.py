"""Image decoding (once per image) and model-input preparation (once per distinct input geometry).

Letterbox follows the YOLO convention the fixture models were trained with: keep aspect ratio, scale
to fit, pad centred with grey 114. `stretch` resizes without padding (SSD-style models). Quantized
inputs are computed from the [0, 1] float input with the model's own scale and zero point, so a uint8
input with scale 1/255 receives raw pixels and an int8 one receives pixel - 128.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from validator.decode.geometry import Letterbox
from validator.errors import InputError
from validator.runners.base import InputSpec

PAD_VALUE = 114


class ResizeMode(str, Enum):
    LETTERBOX = "letterbox"
    STRETCH = "stretch"


def load_image(path: Path) -> np.ndarray:
    """Decode to RGB uint8 HxWx3 with the EXIF orientation applied (gray/RGBA/palette -> RGB)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                # 16-bit grey: scale to 8 bits (as OpenCV does); PIL's convert would clip at 255
                g = np.asarray(im).astype(np.uint32)
                g = (g >> 8).astype(np.uint8) if im.mode != "I" or g.max() > 255 else g.astype(np.uint8)
                return np.repeat(g[..., None], 3, axis=2)
            if im.mode != "RGB":
                im = im.convert("RGBA").convert("RGB") if im.mode == "P" else im.convert("RGB")
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError, ValueError) as e:
        raise InputError(f"{path}: cannot decode image ({e})") from None


def letterbox(img: np.ndarray, input_hw: tuple[int, int], mode: ResizeMode = ResizeMode.LETTERBOX):
    """Resize `img` (HxWx3 uint8) into the model canvas; returns (canvas HxWx3 uint8, Letterbox).

    The geometry comes from `Letterbox.fit`/`Letterbox.stretch`, the same object that maps boxes and
    masks back, so the two can never disagree.
    """
    h, w = img.shape[:2]
    ih, iw = input_hw
    if ResizeMode(mode) == ResizeMode.STRETCH:
        lb = Letterbox.stretch((h, w), (ih, iw))
        out = img if (h, w) == (ih, iw) else np.asarray(Image.fromarray(img).resize((iw, ih), Image.BILINEAR))
        return out, lb
    lb = Letterbox.fit((h, w), (ih, iw))
    nw, nh = int(round(w * lb.scale_x)), int(round(h * lb.scale_y))
    if (nh, nw) == (ih, iw):
        resized = img if (h, w) == (ih, iw) else np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        return resized, lb
    resized = img if (nh, nw) == (h, w) else np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    canvas = np.full((ih, iw, 3), PAD_VALUE, np.uint8)
    top, left = int(lb.pad_y), int(lb.pad_x)
    canvas[top: top + nh, left: left + nw] = resized
    return canvas, lb


def to_input(canvas: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HxWx3 uint8 canvas -> the model's input tensor (layout, dtype and quantization of `spec`)."""
    x = canvas[None]  # 1xHxWx3
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    if spec.dtype in ("uint8", "int8", "int16"):
        info = np.iinfo(spec.dtype)
        if spec.scale > 0:
            q = np.round(x.astype(np.float32) / 255.0 / spec.scale) + spec.zero_point
        else:  # unquantized integer input: raw pixels, shifted for int8
            q = x.astype(np.int32) - (128 if spec.dtype == "int8" else 0)
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(spec.dtype))
    out = np.empty(x.shape, spec.dtype)
    np.multiply(x, np.asarray(1 / 255, spec.dtype), out=out, casting="unsafe")  # one pass, C-contiguous
    return out
