"""Image decoding (once per image) and model-input preparation (once per distinct input geometry).

Letterbox follows the YOLO convention the fixture models were trained with: keep aspect ratio, scale
to fit, pad centred with grey 114. `stretch` resizes without padding (SSD-style models). What values the
model receives for those pixels (0..1, -1..1, raw pixels, mean/std; quantized with the input's own scale and
zero point) is decided once per model by `choose_transform`, from the input's quantization, then the model's
metadata, then the 0..1 default, and applied by `InputMaker` through a per-channel lookup table.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from validator.errors import InputError
from validator.tensors import INPUT_RANGES, InputSpec, InputTransform, Letterbox

PAD_VALUE = 114


class ResizeMode(str, Enum):
    LETTERBOX = "letterbox"
    STRETCH = "stretch"


def _orientation_swaps(im) -> bool:
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF Orientation: transposes/rotations by 90
    except Exception:  # a broken EXIF block: PIL's exif_transpose ignores it too  # noqa: BLE001
        return False


def decoded_size(path: Path, expect_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) that :func:`load_image` will return, from the header only (no pixel decoding)."""
    try:
        with Image.open(path) as im:
            raw = (im.height, im.width)
            rotated = (raw[1], raw[0]) if _orientation_swaps(im) else raw
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError, ValueError) as e:
        raise InputError(f"{path}: cannot decode image ({e})") from None
    if expect_hw is not None and rotated != tuple(expect_hw) and raw == tuple(expect_hw):
        return raw
    return rotated


def load_image(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to RGB uint8 HxWx3 with the EXIF orientation applied (gray/RGBA/palette -> RGB).

    ``expect_hw`` (the annotation's height, width): when only the stored, un-rotated pixels have that
    size, the annotations were drawn on them, so the EXIF rotation is not applied (COCO-style tools
    annotate the stored pixels; applying the rotation would put every box in the wrong place).
    """
    try:
        with Image.open(path) as im:
            rotated = ImageOps.exif_transpose(im)
            if expect_hw is not None and (rotated.height, rotated.width) != tuple(expect_hw) \
                    and (im.height, im.width) == tuple(expect_hw):
                rotated = im
            im = rotated
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


class Resample(str, Enum):
    """How the image is resized onto the canvas.

    ``antialias``: PIL's bilinear filter, which widens its support when shrinking (no aliasing).
    ``linear``: OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on uint8, bit for bit (two taps, no antialiasing,
    11-bit fixed-point weights): what Ultralytics ``val`` and EdgeFirst's validator feed their models, so
    ``--metric compat`` / ``edgefirst`` use it by default. The two differ only when the image is resized
    (a 640-wide COCO image at 640 input is not), and most when it is shrunk a lot.
    """

    ANTIALIAS = "antialias"
    LINEAR = "linear"


def _y_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit weights of OpenCV's INTER_LINEAR along y (float32 positions as
    OpenCV computes them, weights rounded half to even, clamped indices keeping their weights)."""
    scale = 1.0 / (n_out / n_in)
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f)
    a = (f - i0).astype(np.float32)
    w0 = np.rint((np.float32(1) - a) * np.float32(2048)).astype(np.int32)
    w1 = np.rint(a * np.float32(2048)).astype(np.int32)
    i0 = i0.astype(np.int64)
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), w0, w1


def _x_weights(n_out: int, n_in: int):
    """Along x OpenCV drops the second tap where the first one is clamped at either end."""
    scale = 1.0 / (n_out / n_in)
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    a = (f - np.floor(f)).astype(np.float32)
    clamp = (i0 < 0) | (i0 >= n_in - 1)
    a = np.where(clamp, np.float32(0), a)
    i0 = np.clip(i0, 0, n_in - 1)
    w0 = np.rint((np.float32(1) - a) * np.float32(2048)).astype(np.int32)
    w1 = np.rint(a * np.float32(2048)).astype(np.int32)
    return i0, np.minimum(i0 + 1, n_in - 1), w0, w1


def resize_linear(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` for HxWx3 uint8, in numpy.

    Same arithmetic as OpenCV's vectorised path: a horizontal pass to 2048-scaled integers, then per row
    ``((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16)``, ``(y + 2) >> 2``. Checked equal to OpenCV 5.0 on
    300 random size pairs (tests compare it with OpenCV where it is installed).
    """
    h, w = img.shape[:2]
    x0, x1, a0, a1 = _x_weights(new_w, w)
    y0, y1, b0, b1 = _y_weights(new_h, h)
    src = img.astype(np.int32)
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]
    y = ((rows[y0] >> 4) * b0[:, None, None] >> 16) + ((rows[y1] >> 4) * b1[:, None, None] >> 16)
    return np.clip((y + 2) >> 2, 0, 255).astype(np.uint8)


def _resize(img: np.ndarray, new_w: int, new_h: int, resample: Resample) -> np.ndarray:
    if img.shape[:2] == (new_h, new_w):
        return img
    if Resample(resample) is Resample.LINEAR:
        return resize_linear(img, new_w, new_h)
    return np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR))


def letterbox(img: np.ndarray, input_hw: tuple[int, int], mode: ResizeMode = ResizeMode.LETTERBOX,
              resample: Resample = Resample.ANTIALIAS):
    """Resize `img` (HxWx3 uint8) into the model canvas; returns (canvas HxWx3 uint8, Letterbox).

    The geometry comes from `Letterbox.fit`/`Letterbox.stretch`, the same object that maps boxes and
    masks back, so the two can never disagree.
    """
    h, w = img.shape[:2]
    ih, iw = input_hw
    if ResizeMode(mode) == ResizeMode.STRETCH:
        return _resize(img, iw, ih, resample), Letterbox.stretch((h, w), (ih, iw))
    lb = Letterbox.fit((h, w), (ih, iw))
    nw, nh = int(round(w * lb.scale_x)), int(round(h * lb.scale_y))
    resized = _resize(img, nw, nh, resample)
    if (nh, nw) == (ih, iw):
        return resized, lb
    canvas = np.full((ih, iw, 3), PAD_VALUE, np.uint8)
    top, left = int(lb.pad_y), int(lb.pad_x)
    canvas[top: top + nh, left: left + nw] = resized
    return canvas, lb


# ------------------------------------------------------------------------------------ input transform
RAW_TOLERANCE_STEPS = 1.5  # a quantized input is "raw pixels" when its ends are within this many steps
NEAR_TOLERANCE = 0.05  # a calibrated range starts within 5 % of a convention's width from its low end ...
MIN_COVER = 0.6  # ... and spans at least 60 % of it (calibration data rarely reaches both ends)


def _quantized_range(spec: InputSpec) -> tuple[float, float]:
    info = np.iinfo(spec.dtype)
    return (int(info.min) - spec.zero_point) * spec.scale, (int(info.max) - spec.zero_point) * spec.scale


def _calibrated_convention(lo: float, hi: float, slack: float) -> str | None:
    """The convention a calibrated input range belongs to: inside it (to ``slack``), starting near its low
    end, covering most of it. A converter quantizes the input over the values its calibration images
    produced, so 0..1 data gives e.g. 0..0.928 and -1..1 data -0.998..0.859: short of the top, rarely of the
    bottom (black pixels are common, white ones less so)."""
    for label, (a, b) in INPUT_RANGES.items():
        w = b - a
        if lo >= a - slack and hi <= b + slack and lo - a <= NEAR_TOLERANCE * w + slack and hi - lo >= MIN_COVER * w:
            return label
    return None


def choose_transform(spec: InputSpec, normalization: dict | None = None, override: str | None = None) -> InputTransform:
    """Decide how canvas pixels become this model's input values, and say why.

    Order: ``--input-range`` (``override``) wins. Then a quantized input's own parameters: the integer
    range, dequantized, spans the value range the model was calibrated on; a range that is one of the
    conventions (0..1, -1..1, 0..255) decides it, and when the integer range maps one to one onto it
    (uint8 1/255 & 0, uint8 1/128 & 128, int8 1/255 & -128, ...) the model receives the raw pixels exactly.
    Then the model's own metadata (TFLite NormalizationOptions mean/std: ``(p - mean) / std``). Else 0..1,
    the convention of Ultralytics exports. An integer input without quantization parameters takes raw
    pixels (int8: pixel - 128).
    """
    if spec.quantized:
        lo, hi = _quantized_range(spec)
        step = RAW_TOLERANCE_STEPS * spec.scale
        qdesc = f"{spec.dtype} input quantization (scale {spec.scale:.6g}, zero point {spec.zero_point})"
        for label, (a, b) in INPUT_RANGES.items():  # raw pixels: 8-bit inputs only (256 levels, one per pixel)
            if np.dtype(spec.dtype).itemsize == 1 and abs(lo - a) <= step and abs(hi - b) <= step:
                if override and override != label:
                    break
                return InputTransform.from_range(label, f"{qdesc} maps the pixels 0..255 one to one onto "
                                                        f"{lo:.4g}..{hi:.4g}: raw pixels", raw=True)
    if override:
        return InputTransform.from_range(override, "--input-range")
    if spec.quantized:
        label = _calibrated_convention(lo, hi, RAW_TOLERANCE_STEPS * spec.scale)
        if label:
            return InputTransform.from_range(label, f"{qdesc}: calibrated range {lo:.4g}..{hi:.4g} lies in the "
                                                    f"{label} convention")
    if normalization and normalization.get("mean") is not None and normalization.get("std") is not None:
        src = normalization.get("source") or "model metadata"
        t = InputTransform.from_mean_std(normalization["mean"], normalization["std"],
                                         f"{src}: mean {list(normalization['mean'])}, std {list(normalization['std'])}")
        return t
    if spec.integer and not spec.quantized:
        return InputTransform.from_range("0,255", f"{spec.dtype} input without quantization parameters: raw "
                                                  "pixels" + (" - 128" if spec.dtype == "int8" else ""), raw=True)
    if spec.quantized:
        return InputTransform.from_range("0,1", f"{qdesc}: range {lo:.4g}..{hi:.4g} matches no convention and "
                                                "the model has no normalization metadata; assumed 0..1")
    return InputTransform.from_range("0,1", "float input without normalization metadata: 0..1 (pixel / 255, "
                                            "the Ultralytics convention)")


class InputMaker:
    """Fills the model's input tensor from canvases, into one preallocated buffer.

    The transform's lookup table (:meth:`InputTransform.lut`, 256 entries per channel) defines the values;
    the maker takes the cheapest exact way to them: a float input is ``p * gain + offset`` in float32 (the
    very operations the table was built with, 3x faster than a gather), raw pixels are a copy (int8:
    ``p ^ 0x80``, i.e. ``p - 128``), and only a re-quantized integer input goes through the table. The
    returned array is the maker's own buffer, overwritten by the next call.
    """

    def __init__(self, spec: InputSpec, transform: InputTransform):
        self.spec, self.transform = spec, transform
        self.table = transform.lut(spec)
        self.buffer = np.empty(spec.shape, dtype=spec.dtype)
        self.nchw = spec.layout == "NCHW"
        shape = (3, 1, 1) if self.nchw else (1, 1, 3)
        if not spec.integer:
            self.mode = "affine"
            self.gain = np.asarray(transform.gain, np.float32).reshape(shape)
            self.offset = np.asarray(transform.offset, np.float32).reshape(shape)
            self.uniform = len(set(transform.gain)) == 1 and len(set(transform.offset)) == 1
        elif transform.raw or not spec.quantized:
            self.mode = "raw"
        else:
            self.mode = "table"

    def __call__(self, canvas: np.ndarray) -> np.ndarray:
        out = self.buffer[0]
        src = np.ascontiguousarray(canvas.transpose(2, 0, 1)) if self.nchw else canvas
        if self.mode == "affine":
            if self.uniform:
                np.multiply(src, self.gain.flat[0], out=out, casting="unsafe")
                if self.offset.flat[0]:
                    out += self.offset.flat[0]
            else:
                np.multiply(src, self.gain, out=out, casting="unsafe")
                out += self.offset
        elif self.mode == "raw":
            if self.spec.dtype == "int8":
                np.bitwise_xor(src, np.uint8(0x80), out=out.view(np.uint8))
            else:
                np.copyto(out, src, casting="unsafe")
        elif self.nchw:
            for c in range(3):
                np.take(self.table[c], src[c], out=out[c])
        else:
            for c in range(3):
                np.take(self.table[c], src[:, :, c], out=out[:, :, c])
        return self.buffer


def to_input(canvas: np.ndarray, spec: InputSpec, transform: InputTransform | None = None) -> np.ndarray:
    """HxWx3 uint8 canvas -> a new input tensor (layout, dtype and quantization of ``spec``)."""
    maker = InputMaker(spec, transform or choose_transform(spec))
    return maker(canvas).copy()
