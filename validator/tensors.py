"""The shared vocabulary of the validator: what a model's tensors look like and how an image becomes its input.

Runners describe models with these types, ``data.preprocess`` fills input tensors from them and ``decode``
reads outputs with them; keeping them here (and importing nothing from the rest of the package) means none
of those three needs to import another.

* :class:`TensorSpec`: one output (name, shape, dtype, quantization).
* :class:`InputSpec`: the single image input (layout, size, dtype, quantization).
* :class:`InputTransform`: how a canvas pixel (0..255) becomes the value the model expects; decided per
  model by :func:`validator.data.preprocess.choose_transform`, recorded in ``summary.json``.
* :class:`Letterbox`: where one original image sits on the model-input canvas (used both to make the
  input and to map boxes and masks back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model output (as the runner reports it, batch dimension kept)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    scale: float = 0.0
    zero_point: int = 0

    def describe(self) -> str:
        clean = " ".join(self.name.split()) or "?"
        return f"{clean}[{','.join(str(d) for d in self.shape)}] {self.dtype}"


@dataclass(frozen=True)
class InputSpec:
    """The model's image input. ``scale`` > 0 for a quantized (int8/uint8) input: real = (q - zero_point) * scale."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    layout: str  # "NCHW" | "NHWC"
    hw: tuple[int, int]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def integer(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"

    @property
    def quantized(self) -> bool:
        return self.integer and self.scale > 0

    def describe(self) -> str:
        q = f" (scale {self.scale:.6g}, zero point {self.zero_point})" if self.quantized else ""
        return f"{self.name}{list(self.shape)} {self.dtype} {self.layout}{q}"


@dataclass(frozen=True)
class Precision:
    """A model's numeric precision as its tensors show it: ``label`` for tables ("INT8", "float16",
    "INT8 (QDQ)", ...), ``quantized`` decides the role (--float must not be, --int8 must be), ``evidence``
    says what was seen (for the error message when a role does not fit)."""

    label: str
    quantized: bool
    evidence: str


# Input value ranges a model may expect for the pixel range 0..255 (`--input-range`).
INPUT_RANGES: dict[str, tuple[float, float]] = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}


@dataclass(frozen=True)
class InputTransform:
    """How a canvas pixel ``p`` (0..255) of channel ``c`` becomes the model's input value.

    The real value the model expects is ``p * gain[c] + offset[c]``. A float input receives it as is. A
    quantized input receives ``clip(round(real / scale) + zero_point)``, except when ``raw``: the input's
    quantization maps the integer range one to one onto the expected range, so the model takes the pixel
    itself, shifted to its dtype (uint8: ``p``; int8: ``p - 128``) — exactly what runs on the device, with
    no rounding. ``label`` names the convention ("0,1", "-1,1", "0,255", "mean/std"), ``source`` says why
    it was chosen.
    """

    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    label: str
    source: str
    raw: bool = False

    @classmethod
    def from_range(cls, label: str, source: str, raw: bool = False) -> InputTransform:
        lo, hi = INPUT_RANGES[label]
        g = (hi - lo) / 255.0
        return cls((g, g, g), (lo, lo, lo), label, source, raw)

    @classmethod
    def from_mean_std(cls, mean, std, source: str) -> InputTransform:
        """``(p - mean) / std`` per channel (TFLite NormalizationOptions semantics); 1 value = all channels."""
        mean = [float(v) for v in mean]
        std = [float(v) for v in std]
        if len(mean) == 1:
            mean *= 3
        if len(std) == 1:
            std *= 3
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise ValueError(f"normalization needs 1 or 3 means and non-zero stds, got mean {mean} std {std}")
        gain = tuple(1.0 / s for s in std)
        offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
        rng = next((k for k, (lo, hi) in INPUT_RANGES.items()
                    if all(np.isclose(o, lo, atol=1e-6) and np.isclose(g * 255 + o, hi, atol=1e-4)
                           for g, o in zip(gain, offset, strict=True))), None)
        label = rng or "mean/std"
        return cls(gain, offset, label, source)  # type: ignore[arg-type]

    def lut(self, spec: InputSpec) -> np.ndarray:
        """(3, 256) table: channel c, pixel p -> the input value in ``spec.dtype``."""
        p = np.arange(256, dtype=np.float32)
        if spec.integer:
            info = np.iinfo(spec.dtype)
            if self.raw or not spec.quantized:
                q = np.arange(256, dtype=np.int64) + (int(info.min) if info.min < 0 else 0)
                return np.repeat(q.astype(spec.dtype)[None], 3, axis=0)
            rows = []
            for g, o in zip(self.gain, self.offset, strict=True):
                real = p.astype(np.float64) * g + o
                q = np.round(real / spec.scale) + spec.zero_point
                rows.append(np.clip(q, info.min, info.max).astype(spec.dtype))
            return np.stack(rows)
        rows = [p * np.float32(g) + np.float32(o) if o else p * np.float32(g)
                for g, o in zip(self.gain, self.offset, strict=True)]
        return np.stack(rows).astype(spec.dtype)

    def describe(self) -> dict:
        return {"range": self.label, "gain": [round(g, 9) for g in self.gain],
                "offset": [round(o, 9) for o in self.offset], "raw_pixels": self.raw, "source": self.source}


@dataclass(frozen=True)
class Letterbox:
    """How one original image was placed on the model-input canvas of ``input_hw`` (height, width).

    Coordinates are continuous, pixel edges at integers: original point ``x`` lands on the canvas at
    ``x * scale_x + pad_x``. One dataclass covers both resize modes: letterbox (one scale, padding) and
    stretch (a scale per axis, no padding).
    """

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

    def rescaled(self, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Letterbox:
        """The same placement seen from another frame of the same picture (e.g. the annotation's declared
        width/height when the decoded image has another size): original coordinates scale by to/from."""
        return Letterbox(self.scale_x * from_hw[1] / to_hw[1], self.scale_y * from_hw[0] / to_hw[0],
                         self.pad_x, self.pad_y, self.input_hw)

    def to_original(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas coordinates -> original-image coordinates (not clipped)."""
        return (x - self.pad_x) / self.scale_x, (y - self.pad_y) / self.scale_y

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-image coordinates -> canvas coordinates."""
        return x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y
