"""Per-output error of an INT8 model against its float reference, on the same preprocessed images, by role.

Why by role: a monolithic YOLO output holds pixel boxes (0..640) and class scores (0..1) in one tensor; one
SQNR over it is the boxes' SQNR and hides a score error of 0.5. Each model's outputs are read through its
own decoded contract (validator.decode.contract), so an ONNX [1, 4+nc, N] and a TFLite split pair compare
part for part: boxes (cx, cy, w, h in input pixels, whatever units the model emits), class scores, mask
coefficients, and the prototypes separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from validator.data.preprocess import InputMaker, Resample, ResizeMode, letterbox, load_image
from validator.decode.contract import Contract, ContractKind, _channels

ROLES = ("boxes", "scores", "coefs", "protos")


def role_arrays(contract: Contract, outputs: dict, input_hw: tuple[int, int], box_units: str | None) -> dict:
    """{role: float64 array} of one image's outputs: boxes/scores/coefs as [C, N], protos as [nm, h, w]."""
    out = {}
    if contract.kind is ContractKind.YOLO:
        a = _channels(contract, outputs[contract.roles["preds"]]).astype(np.float64)
        nc, nm = contract.num_classes, contract.num_masks
        out["boxes"], out["scores"] = a[:4], a[4:4 + nc]
        if nm:
            out["coefs"] = a[4 + nc:4 + nc + nm]
    else:
        for role in ("boxes", "scores", "coefs"):
            if role in contract.roles:
                out[role] = _channels(contract, outputs[contract.roles[role]]).astype(np.float64)
    if box_units == "normalized" and "boxes" in out:
        h, w = input_hw
        out["boxes"] = out["boxes"] * np.array([w, h, w, h], np.float64)[:, None]
    if "protos" in contract.roles:
        p = outputs[contract.roles["protos"]][0].astype(np.float64)
        out["protos"] = p.transpose(2, 0, 1) if contract.protos_nhwc else p
    return out


def comparable(ref, src) -> str | None:
    """Why two sources' outputs cannot be compared element by element (None: they can)."""
    for s in (ref, src):
        if s.contract.kind not in (ContractKind.YOLO, ContractKind.YOLO_SPLIT):
            return (f"{s.name} emits {s.contract.kind.value} rows (detections after its own NMS), not per-anchor "
                    "outputs")
    if ref.runner.input.hw != src.runner.input.hw:
        return f"input sizes differ ({ref.runner.input.hw} vs {src.runner.input.hw})"
    if ref.contract.num_anchors != src.contract.num_anchors or ref.contract.num_classes != src.contract.num_classes:
        return "anchor or class counts differ"
    return None


def run_images(src, canvases: Sequence[np.ndarray]) -> list[dict]:
    """The source's role arrays on each letterboxed canvas (its own input transform and quantization)."""
    maker = InputMaker(src.runner.input, src.transform)
    return [role_arrays(src.contract, src.runner.run(maker(c)), src.runner.input.hw, src.box_units)
            for c in canvases]


def canvases(ds, input_hw: tuple[int, int], n: int, resize: str = "letterbox", resample: str = "antialias"):
    """The first ``n`` images of the dataset letterboxed as ``validate`` makes them."""
    out = []
    for rec in ds.images[:n]:
        img = load_image(rec.path, (rec.height, rec.width))
        out.append(letterbox(img, input_hw, ResizeMode(resize), Resample(resample))[0])
    return out


def _stats(ref: list[np.ndarray], got: list[np.ndarray]) -> dict:
    signal = noise = total = bias = 0.0
    worst, n = 0.0, 0
    for a, b in zip(ref, got, strict=True):
        d = b - a
        signal += float((a ** 2).sum())
        noise += float((d ** 2).sum())
        total += float(np.abs(d).sum())
        bias += float(d.sum())
        worst = max(worst, float(np.abs(d).max()) if d.size else 0.0)
        n += d.size
    if noise == 0:
        sqnr = None  # identical
    else:
        sqnr = 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return {"sqnr_db": None if sqnr is None or not math.isfinite(sqnr) else round(sqnr, 2),
            "max_abs_error": round(worst, 6), "mean_abs_error": round(total / max(n, 1), 6),
            "bias": round(bias / max(n, 1), 6), "values": n}


def output_errors(ref_arrays: list[dict], got_arrays: list[dict]) -> list[dict]:
    """``[{role, sqnr_db, max_abs_error, mean_abs_error, bias, unit}]``: bias is mean(INT8 - float)."""
    rows = []
    for role in ROLES:
        if role in ref_arrays[0] and role in got_arrays[0]:
            r = _stats([x[role] for x in ref_arrays], [x[role] for x in got_arrays])
            rows.append({"role": role, **r, "unit": "px" if role == "boxes" else "value"})
    return rows
