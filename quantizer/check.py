"""Per-output error of a variant against its float parent on held-out images (SQNR, max abs error).

Both models get their input the way ``validate`` makes it (``validator.data.preprocess``: letterbox, then each
model's own input transform and quantization), and outputs are compared dequantized, part by part: a
monolithic output is split into its box, score and coefficient rows (``layout.output_roles``), so a box
error of pixels does not hide a score error of 0.5.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from quantizer.common import quiet_stderr
from quantizer.layout import output_roles
from validator.data.preprocess import InputMaker, Resample, ResizeMode, choose_transform, letterbox, load_image
from validator.runners import open_runner


def _runner(path: Path):
    with quiet_stderr():
        return open_runner(path)


def _inputs(runner, canvases):
    maker = InputMaker(runner.input, choose_transform(runner.input, runner.metadata.get("normalization")))
    for c in canvases:
        yield maker(c)


class FloatReference:
    """The float parent's outputs on the check images, computed once for all its variants."""

    def __init__(self, parent: Path, images: list[tuple[str, Path]], resize: str = "letterbox",
                 resample: str = "antialias"):
        runner = _runner(parent)
        self.names = [n for n, _ in images]
        self.canvases = [letterbox(load_image(p), runner.input.hw, ResizeMode(resize), Resample(resample))[0]
                         for _, p in images]
        self.output_names = [o.name for o in runner.outputs]
        self.outputs = [runner.run(x) for x in _inputs(runner, self.canvases)]
        nc = len(runner.metadata.get("names") or []) or None
        self.num_classes = nc


def _channel_axis(shape: tuple[int, ...]) -> int | None:
    return (1 if shape[1] <= shape[2] else 2) if len(shape) == 3 else None


def _end2end_rows(shapes: list[tuple[int, ...]], hw: tuple[int, int]) -> bool:
    """End-to-end detection rows: one [1, K, 6] output, or split [1, K, 4] boxes + [1, K, nc] scores, where K
    is not the anchor count of a YOLO head at strides 8/16/32 (that pair is a transposed split head)."""
    anchors = sum((hw[0] // st) * (hw[1] // st) for st in (8, 16, 32))
    if len(shapes) == 1:
        return len(shapes[0]) == 3 and shapes[0][2] == 6 and 6 < shapes[0][1] != anchors
    return (len(shapes) == 2 and all(len(x) == 3 for x in shapes) and shapes[0][1] == shapes[1][1]
            and shapes[0][2] == 4 and shapes[1][2] < shapes[1][1] != anchors)


def compare(variant: Path, ref: FloatReference, layout: str) -> list[dict]:
    """``[{name, role, sqnr_db, max_abs_error}]`` over all check images, per output part."""
    if not ref.canvases:
        return []
    runner = _runner(variant)
    got = [runner.run(x) for x in _inputs(runner, ref.canvases)]
    vnames = [o.name for o in runner.outputs]
    pairs = [(n, n) for n in ref.output_names] if set(ref.output_names) <= set(vnames) else \
        list(zip(ref.output_names, vnames, strict=False))
    shapes = [tuple(ref.outputs[0][n].shape) for n, _ in pairs]
    roles = output_roles(shapes, ref.num_classes, "split" if layout == "split" else "monolithic")
    if _end2end_rows(shapes, ref.canvases[0].shape[:2]):  # top-k rows in score order: pair float and INT8 rows
        from quantizer.convert import align_rows

        got = [{**v, **{vn: align_rows({rn: r[rn] for rn, _ in pairs},
                                       {rn: v[vn] for rn, vn in pairs})[0][rn] for rn, vn in pairs}}
               for r, v in zip(ref.outputs, got, strict=True)]
    rows = []
    for (rname, vname), parts in zip(pairs, roles, strict=True):
        for role, sl in parts:
            signal = noise = 0.0
            worst = 0.0
            for r_out, v_out in zip(ref.outputs, got, strict=True):
                a, b = r_out[rname], v_out[vname]
                if b.shape != a.shape:
                    raise ValueError(f"{variant}: output {vname} {list(b.shape)} does not match the float "
                                     f"model's {rname} {list(a.shape)}")
                ax = _channel_axis(a.shape)
                if ax is not None:
                    index = [slice(None)] * a.ndim
                    index[ax] = sl
                    a, b = a[tuple(index)], b[tuple(index)]
                a64, d = a.astype(np.float64), a.astype(np.float64) - b.astype(np.float64)
                signal += float((a64 ** 2).sum())
                noise += float((d ** 2).sum())
                worst = max(worst, float(np.abs(d).max()) if d.size else 0.0)
            sqnr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
            rows.append({"name": rname, "role": role,
                         "sqnr_db": None if sqnr is None or not math.isfinite(sqnr) else round(sqnr, 2),
                         "max_abs_error": round(worst, 6)})
    return rows
