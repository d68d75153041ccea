"""Pictures for report.html: matplotlib charts and the gallery's annotated images, as deterministic bytes.

Every chart is drawn on a fresh ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend switch) under matplotlib's default style (a user's matplotlibrc cannot change the bytes), saved
as PNG at a fixed DPI without the "Software" tag, then re-encoded by Pillow as a palette PNG (charts have
few colours: about a third of the size, nothing visible lost). Same data -> same bytes on the same
matplotlib/Pillow. Gallery images are drawn with Pillow on the downscaled picture and encoded as JPEG.

Colours: one per model, in the order of ``summary["models"]`` (the reference first); losses red, gains
green, changes inside the neutral band grey (the same band the HTML table uses).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import numpy as np

DPI = 100
NEUTRAL_PTS = 0.5  # |Δ| below this many points is drawn (and coloured) as "no change"
MODEL_COLORS = ("#1f5fa8", "#e8710a", "#7b3fb5", "#1a9a8a", "#c2185b", "#6d4c41", "#5f6368", "#9e9d24",
                "#0097a7", "#ad1457")
LOSS, GAIN, NEUTRAL = "#c5221f", "#188038", "#9aa0a6"
CLASS_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
                "#ffd8b1", "#000075", "#a9a9a9", "#ffe119")
IOU_TITLES = {"bbox": "boxes", "segm": "masks"}


def model_color(i: int) -> str:
    return MODEL_COLORS[i % len(MODEL_COLORS)]


def delta_color(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or abs(v) < NEUTRAL_PTS:
        return NEUTRAL
    return LOSS if v < 0 else GAIN


# ------------------------------------------------------------------------------------------ plumbing
@contextmanager
def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update({
            "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
            "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
            "axes.grid": True, "grid.color": "#e3e3e3", "grid.linewidth": 0.6, "axes.axisbelow": True,
            "svg.hashsalt": "qharness", "path.simplify": True,
        })
        fig = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(fig)
        yield fig


def _png(fig) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    pal = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    pal.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _valid_curve(values: Sequence[float] | None) -> np.ndarray | None:
    """A COCO precision curve with -1 (undefined) as NaN; None when nothing is defined."""
    if values is None:
        return None
    a = np.asarray(values, dtype=float)
    if not a.size or not (a > -1).any():
        return None
    return np.where(a > -1, a, np.nan)


# ------------------------------------------------------------------------------------------ charts
def per_class_bars(panels: list[dict], delta: bool = True, max_classes: int = 30) -> bytes:
    """Horizontal bars per class, worst first, one panel per entry of ``panels``:
    ``{"title": str, "rows": [{"name", "n_gt", "value"}]}`` with values in points (``delta``) or %.
    Only the first ``max_classes`` rows of each panel are drawn (the caller says so in the page)."""
    n = max((min(len(p["rows"]), max_classes) for p in panels), default=1) or 1
    names_all = [_bar_name(r) for p in panels for r in p["rows"][:max_classes]]
    label_w = 0.25 + 0.062 * max((len(x) for x in names_all), default=4)  # inches, 8 pt labels
    axis_w = 3.3
    width = len(panels) * (label_w + axis_w) + 0.35 * len(panels)
    height = 0.85 + 0.19 * n
    with _figure(width, height) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        fig.subplots_adjust(left=label_w / width, right=1 - 0.3 / width, top=1 - 0.35 / height,
                            bottom=0.5 / height, wspace=(label_w + 0.35) / axis_w)
        for ax, panel in zip(axes, panels, strict=True):
            rows = panel["rows"][:max_classes]
            names = [_bar_name(r) for r in rows]
            vals = [float(r["value"]) if r.get("value") is not None else 0.0 for r in rows]
            y = np.arange(len(rows))
            colors = [delta_color(v) for v in vals] if delta else [MODEL_COLORS[0]] * len(vals)
            ax.barh(y, vals, color=colors, height=0.72)
            ax.set_yticks(y, names)
            ax.set_ylim(n - 0.5, -0.5)
            ax.grid(axis="y", visible=False)
            if delta:
                ax.axvline(0, color="#444", linewidth=0.8)
                lo = min([0.0, *vals])
                hi = max([0.0, *vals])
                pad = max(0.5, 0.12 * (hi - lo))
                ax.set_xlim(lo - pad, hi + pad)
                ax.axvspan(-NEUTRAL_PTS, NEUTRAL_PTS, color="#f1f3f4", zorder=0)
                ax.set_xlabel("Δ AP (pts)")
                for yi, v in zip(y, vals, strict=True):
                    ax.text(v + (-pad * 0.08 if v < 0 else pad * 0.08), yi, f"{v:+.1f}", va="center",
                            ha="right" if v < 0 else "left", fontsize=7, color="#333")
            else:
                ax.set_xlim(0, 100)
                ax.set_xlabel("AP (%)")
            ax.set_title(panel["title"], loc="left")
        return _png(fig)


def per_class_heatmap(panels: list[dict]) -> bytes:
    """Δ AP per class (rows) and compared model (columns), one panel per entry of ``panels``:
    ``{"title", "classes": [str], "models": [str], "values": classes x models (points, NaN = n/a)}``."""
    from matplotlib.colors import TwoSlopeNorm

    n_rows = max(len(p["classes"]) for p in panels)
    n_cols = max(len(p["models"]) for p in panels)
    label_w = 0.25 + 0.062 * max(len(c) for p in panels for c in p["classes"])
    cell = 0.36
    axis_w = max(1.2, cell * n_cols)
    width = len(panels) * (label_w + axis_w) + 0.9
    top_h = 0.3 + 0.066 * max(len(m) for p in panels for m in p["models"])  # vertical model names, 8 pt
    height = top_h + 0.45 + 0.19 * n_rows
    with _figure(width, height) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        fig.subplots_adjust(left=label_w / width, right=1 - 0.9 / width, top=1 - top_h / height,
                            bottom=0.3 / height, wspace=label_w / axis_w)
        im = None
        for ax, panel in zip(axes, panels, strict=True):
            v = np.asarray(panel["values"], dtype=float)
            lim = max(NEUTRAL_PTS * 4, float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 1.0)
            im = ax.imshow(v, cmap="RdYlGn", norm=TwoSlopeNorm(0, -lim, lim), aspect="auto", interpolation="nearest")
            ax.set_yticks(np.arange(len(panel["classes"])), panel["classes"])
            ax.set_xticks(np.arange(len(panel["models"])), panel["models"], rotation=90, ha="center")
            ax.xaxis.tick_top()
            ax.grid(False)
            for (i, j), x in np.ndenumerate(v):
                if np.isfinite(x) and v.size <= 400:
                    ax.text(j, i, f"{x:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(x) > 0.6 * lim else "#222")
            ax.set_xlabel(panel["title"])
        if im is not None:
            cax = fig.add_axes((1 - 0.75 / width, 0.3 / height, 0.12 / width, 1 - (top_h + 0.3) / height))
            fig.colorbar(im, cax=cax, label="Δ AP (pts)")
        return _png(fig)


def _bar_name(r: dict) -> str:
    return f"{r['name']} ({r['n_gt']})" if r.get("n_gt") is not None else str(r["name"])


def pr_overall(curves: dict, models: list[tuple[str, str, int]], iou_types: list[str]) -> bytes | None:
    """Precision-recall per IoU type (one panel each): every model at IoU 0.50 (solid) and averaged over
    0.50:0.95 (dashed). ``models``: (name, label, colour index); the colour key is the page's (HTML)."""
    panels = [t for t in iou_types if any(curves.get(m, {}).get(t) for m, _, _ in models)]
    if not panels:
        return None
    with _figure(4.2 * len(panels) + 0.4, 3.2) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, t in zip(axes, panels, strict=True):
            for name, _, ci in models:
                c = curves.get(name, {}).get(t)
                if not c:
                    continue
                r = np.asarray(c.get("recall") or np.linspace(0, 1, 101), dtype=float)
                for key, style in (("0.50", "-"), ("0.50:0.95", "--")):
                    p = _valid_curve(c.get("precision", {}).get(key))
                    if p is not None and len(p) == len(r):
                        ax.plot(r, p, style, color=model_color(ci), linewidth=1.4)
            _unit_axes(ax)
            ax.set_xlabel("recall")
            ax.set_title(f"{IOU_TITLES.get(t, t)}: all classes (solid IoU 0.50, dashed 0.50:0.95)", loc="left",
                         fontsize=9)
        axes[0].set_ylabel("precision")
        fig.tight_layout()
        return _png(fig)


def _unit_axes(ax) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", ".25", ".5", ".75", "1"])
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], ["0", ".25", ".5", ".75", "1"])


def pr_classes(curves: dict, models: list[tuple[str, str, int]],
               picks: list[tuple[str, str, str, str]]) -> bytes | None:
    """Small multiples for the worst classes, IoU 0.50 solid and averaged over 0.50:0.95 dashed:
    ``picks`` = (iou_type, cat_id, title, subtitle with the deltas)."""
    picks = [p for p in picks if any(_class_curve(curves, m, p[0], p[1]) is not None for m, _, _ in models)]
    if not picks:
        return None
    cols = min(4, len(picks))
    rows = math.ceil(len(picks) / cols)
    with _figure(2.3 * cols + 0.5, 2.35 * rows + 0.3) as fig:
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        for i, ax in enumerate(axes.flat):
            if i >= len(picks):
                ax.set_visible(False)
                continue
            t, cat, title, sub = picks[i]
            for name, _, ci in models:
                r = np.asarray(curves.get(name, {}).get(t, {}).get("recall") or np.linspace(0, 1, 101), dtype=float)
                for key, style in (("0.50", "-"), ("0.50:0.95", "--")):
                    p = _class_curve(curves, name, t, cat, key)
                    if p is not None and len(p) == len(r):
                        ax.plot(r, p, style, color=model_color(ci), linewidth=1.2)
            _unit_axes(ax)
            ax.set_title(f"{title}\n{sub}", loc="left", fontsize=8)
            if i % cols == 0:
                ax.set_ylabel("precision")
            if i // cols == rows - 1 or i + cols >= len(picks):
                ax.set_xlabel("recall")
                ax.xaxis.set_tick_params(labelbottom=True)
        fig.tight_layout()
        return _png(fig)


def _class_curve(curves: dict, model: str, t: str, cat: str, key: str = "0.50") -> np.ndarray | None:
    pc = curves.get(model, {}).get(t, {}).get("per_class", {})
    entry = pc.get(cat, pc.get(int(cat) if str(cat).lstrip("-").isdigit() else cat))
    return _valid_curve((entry or {}).get(key))


def size_deltas(deltas: list[dict], iou_types: list[str], labels: dict[str, str],
                colors: dict[str, int]) -> bytes | None:
    """Δ AP small / medium / large per compared model, one panel per IoU type."""
    keys = (("AP_small", "small"), ("AP_medium", "medium"), ("AP_large", "large"))
    panels = [t for t in iou_types if any(d.get("metrics", {}).get(t) for d in deltas)]
    if not panels or not deltas:
        return None
    with _figure(3.6 * len(panels) + 0.4, 2.6) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        w = 0.8 / len(deltas)
        for ax, t in zip(axes, panels, strict=True):
            vals_all = [0.0]
            for j, d in enumerate(deltas):
                m = d.get("metrics", {}).get(t, {})
                vals = [m.get(k) for k, _ in keys]
                x = np.arange(3) + (j - (len(deltas) - 1) / 2) * w
                v = [float(a) if a is not None else 0.0 for a in vals]
                vals_all += v
                col = ([delta_color(u) for u in v] if len(deltas) == 1
                       else model_color(colors.get(d["model"], j + 1)))
                ax.bar(x, v, width=w * 0.9, color=col, label=labels.get(d["model"], d["model"]))
                if len(deltas) == 1:
                    for xi, u in zip(x, v, strict=True):
                        ax.text(xi, u, f"{u:+.1f}", ha="center", va="top" if u < 0 else "bottom", fontsize=7)
            ax.axhline(0, color="#444", linewidth=0.8)
            ax.axhspan(-NEUTRAL_PTS, NEUTRAL_PTS, color="#f1f3f4", zorder=0)
            ax.set_xticks(np.arange(3), [k for _, k in keys])
            ax.grid(axis="x", visible=False)
            lo, hi = min(vals_all), max(vals_all)
            pad = max(0.5, 0.12 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_ylabel("Δ AP (pts)")
            ax.set_title(IOU_TITLES.get(t, t), loc="left")
        fig.tight_layout()  # the colour key is the page's (HTML): a legend here covered the bars
        return _png(fig)


def score_hist(scores: list[tuple[str, int, np.ndarray]], threshold: float | None = 0.25) -> bytes | None:
    """Score distributions overlaid (step histograms, log counts): (label, colour index, scores); the colour
    key is the page's (HTML)."""
    scores = [s for s in scores if s[2].size]
    if not scores:
        return None
    bins = np.linspace(0, 1, 51)
    with _figure(8.8, 2.9) as fig:
        ax_all, ax_hi = fig.subplots(1, 2)
        for label, ci, s in scores:
            h, _ = np.histogram(np.clip(s, 0, 1), bins=bins)
            ax_all.stairs(h, bins, color=model_color(ci), linewidth=1.4, label=label)
            hi = np.sort(s[s >= (threshold or 0)])[::-1]
            if hi.size:  # on a log rank axis ~2000 log-spaced ranks draw the same line as 100k points
                ranks = np.unique(np.geomspace(1, hi.size, min(hi.size, 2000)).round().astype(np.int64))
                ax_hi.plot(ranks, hi[ranks - 1], color=model_color(ci), linewidth=1.4, label=label)
        ax_all.set_yscale("symlog", linthresh=1)
        ax_all.set_xlim(0, 1)
        ax_all.set_xlabel("score")
        ax_all.set_ylabel("detections")
        ax_all.set_title("score histogram (all detections)", loc="left")
        if threshold is not None:
            ax_all.axvline(threshold, color="#444", linestyle=":", linewidth=1)
        ax_hi.set_xscale("log")
        ax_hi.set_xlabel("rank")
        ax_hi.set_ylabel("score")
        ax_hi.set_ylim(threshold or 0, 1.01)
        ax_hi.set_title(f"confident detections, score ≥ {threshold:g}, ranked" if threshold is not None
                        else "detections, ranked", loc="left")
        fig.tight_layout()
        return _png(fig)


def timing_bars(rows: list[tuple[str, int, float, float, float]]) -> bytes | None:
    """Stacked ms/image per stage: (label, colour index, preprocess, inference, postprocess)."""
    if not rows:
        return None
    with _figure(8.8, 0.75 + 0.32 * len(rows)) as fig:
        ax = fig.subplots()
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        for k, (stage, color) in enumerate((("preprocess", "#9aa0a6"), ("inference", "#1f5fa8"),
                                             ("postprocess", "#e8a33d"))):
            v = np.array([r[2 + k] for r in rows], dtype=float)
            ax.barh(y, v, left=left, color=color, height=0.6, label=stage)
            left += v
        ax.set_yticks(y, [r[0] for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel("ms / image")
        ax.grid(axis="y", visible=False)
        ax.legend(frameon=False, ncol=3, loc="lower right", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        return _png(fig)


def sqnr_depth(series: list[tuple[str, int, Sequence[Sequence[float]]]], worst: int = 0) -> bytes | None:
    """Layer-wise SQNR along the graph: (label, colour index, [[depth, sqnr_db], ...]) per model; the dB of
    each tensor of the INT8 model against the same tensor of its float parent, depth = the op's place in
    execution order. Where the curve steps down, an op added error."""
    series = [(lab, ci, np.asarray([p for p in pts if p[1] is not None], dtype=float).reshape(-1, 2))
              for lab, ci, pts in series]
    series = [s for s in series if s[2].size]
    if not series:
        return None
    with _figure(8.8, 2.8) as fig:
        ax = fig.subplots()
        for lab, ci, a in series:
            a = a[np.argsort(a[:, 0], kind="stable")]
            ax.plot(a[:, 0], np.clip(a[:, 1], -10, 80), color=model_color(ci), linewidth=1.1, marker=".",
                    markersize=2.5, label=lab)
        ax.set_xlabel("depth (op index in execution order)")
        ax.set_ylabel("SQNR, dB (INT8 vs float)")
        ax.set_title("layer-wise error along the graph (higher is better; clipped to [-10, 80] dB)", loc="left")
        fig.tight_layout()
        return _png(fig)


def pareto(points: list[tuple[str, int, float, float, int]], reference_map: float | None = None) -> bytes | None:
    """Accuracy vs cost: (label, colour index, ms/image, mAP@0.5:0.95 in %, model bytes) per model; marker area
    follows the model's size, the Pareto front (faster *and* at least as accurate: no other point dominates)
    is joined by a line."""
    pts = [p for p in points if p[2] is not None and p[3] is not None]
    if len(pts) < 2:
        return None
    sizes = np.array([max(p[4] or 0, 1) for p in pts], dtype=float)
    area = 30 + 370 * (sizes - sizes.min()) / (np.ptp(sizes) or 1.0)
    with _figure(8.8, 3.6) as fig:
        ax = fig.subplots()
        for (_, ci, ms, m, _), a in zip(pts, area, strict=True):
            ax.scatter([ms], [m], s=a, color=model_color(ci), alpha=0.75, edgecolors="#202124", linewidths=0.6,
                       zorder=3)
        front = []
        for _, _, ms, m, _ in sorted(pts, key=lambda p: (p[2], -p[3])):
            if not front or m > front[-1][1]:
                front.append((ms, m))
        if len(front) > 1:
            ax.plot([f[0] for f in front], [f[1] for f in front], color="#5f6368", linewidth=1, linestyle="--",
                    zorder=2, label="Pareto front")
            ax.legend(frameon=False, loc="lower right")
        if reference_map is not None:
            ax.axhline(reference_map, color="#1f5fa8", linewidth=0.8, linestyle=":", zorder=1)
        ax.set_xlabel("inference ms / image (this run's host CPU)")
        ax.set_ylabel("mAP@0.5:0.95 (boxes), %")
        ax.set_title("accuracy vs cost (marker area: model size; dotted: the reference's mAP)", loc="left")
        fig.tight_layout()
        return _png(fig)


def collapse_hists(panels: list[dict]) -> bytes | None:
    """Score histograms of collapsed classes, float vs INT8: panels of {"title", "bins", "reference": counts,
    "model": counts, "labels": (reference label, model label), "colors": (ci, ci)}."""
    panels = [p for p in panels if p.get("reference") is not None or p.get("model") is not None]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    with _figure(8.8, 0.4 + 2.0 * rows) as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, p in zip(axes, panels, strict=False):
            edges = np.linspace(0, 1, int(p.get("bins", 20)) + 1)
            for key, k in (("reference", 0), ("model", 1)):
                h = p.get(key)
                if h is not None:
                    ax.stairs(np.asarray(h, dtype=float), edges, color=model_color(p["colors"][k]),
                              linewidth=1.4, label=p["labels"][k])
            ax.set_yscale("symlog", linthresh=1)
            ax.set_xlim(0, 1)
            ax.set_title(p["title"], loc="left", fontsize=9)
            ax.set_xlabel("score")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        axes[0].set_ylabel("detections")
        fig.tight_layout()
        return _png(fig)


# ------------------------------------------------------------------------------------------ gallery
GALLERY_MAX_SIDE = 264  # px: the longer side of a gallery panel
GALLERY_JPEG_QUALITY = 80
CONFIDENT = 0.25


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _base_image(path, width: int, height: int):
    """The picture (RGB) or, when it cannot be read, a grey canvas of the annotated size."""
    from PIL import Image

    if path:
        try:
            with Image.open(path) as im:
                return im.convert("RGB"), True
        except (OSError, ValueError):
            pass
    return Image.new("RGB", (max(1, int(width)), max(1, int(height))), (200, 200, 200)), False


def _mask(seg, height: int, width: int) -> np.ndarray | None:
    if not seg:
        return None
    from pycocotools import mask as mask_utils

    try:
        if isinstance(seg, dict):
            rle = seg
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, *rle["size"])
            m = mask_utils.decode(rle)
        else:
            polys = [p for p in seg if len(p) >= 6]
            if not polys:
                return None
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))
    except (TypeError, ValueError, KeyError):
        return None
    return m.reshape(m.shape[0], m.shape[1]) if m.ndim == 3 else m


def _dashed_rect(draw, box, fill, width: int, dash: int = 5) -> None:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.hypot(bx - ax, by - ay)
        steps = max(1, int(length // dash))
        for s in range(0, steps, 2):
            t0, t1 = s / steps, min(1.0, (s + 1) / steps)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=fill, width=width)


def _corners(xywh, sx: float, sy: float) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) on the panel, ordered. A box may have negative width or height: YOLO26 predicts such
    boxes (Ultralytics' own predict gives them too) and COCO scores them; drawing needs x0 <= x1, y0 <= y1."""
    x, y, w, h = (float(v) for v in xywh)
    x0, x1 = sorted((x * sx, (x + w) * sx))
    y0, y1 = sorted((y * sy, (y + h) * sy))
    return x0, y0, x1, y1


def gallery_panel(path, width: int, height: int, gt: Iterable[dict], dets: Iterable[dict],
                  class_index: dict, class_names: dict, max_side: int = GALLERY_MAX_SIDE,
                  min_score: float = CONFIDENT) -> tuple[bytes, int, int, int]:
    """One model's confident detections (boxes, masks) over the downscaled picture, GT boxes dashed.
    Returns (JPEG bytes, panel width, panel height, detections drawn)."""
    from PIL import Image, ImageDraw

    img, _ = _base_image(path, width, height)
    width = int(width or img.width)
    height = int(height or img.height)
    scale = min(1.0, max_side / max(width, height))
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    img = img.resize((tw, th), Image.Resampling.LANCZOS) if img.size != (tw, th) else img
    sx, sy = tw / width, th / height
    dets = sorted((d for d in dets if float(d.get("score", 1.0)) >= min_score),
                  key=lambda d: (-float(d.get("score", 1.0)), d.get("category_id", 0), tuple(d.get("bbox", ()))))

    def rgb(cat):
        h = CLASS_COLORS[class_index.get(str(cat), 0) % len(CLASS_COLORS)]
        return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))

    arr = np.asarray(img, dtype=np.float32)
    for d in reversed(dets):  # masks first, best on top
        m = _mask(d.get("segmentation"), height, width)
        if m is None:
            continue
        mm = np.asarray(Image.fromarray((m > 0).astype(np.uint8) * 255).resize((tw, th), Image.Resampling.BILINEAR),
                        dtype=np.float32)[..., None] / 255.0 * 0.45
        arr = arr * (1 - mm) + np.asarray(rgb(d.get("category_id")), dtype=np.float32) * mm
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for g in gt:
        box = _corners(g["bbox"], sx, sy)
        _dashed_rect(draw, box, (0, 0, 0), 3)
        _dashed_rect(draw, box, (255, 255, 255), 1)
    font = _font(10)
    for d in dets:
        col = rgb(d.get("category_id"))
        box = _corners(d["bbox"], sx, sy)
        draw.rectangle(box, outline=col, width=2)
        text = f"{class_names.get(str(d.get('category_id')), d.get('category_id'))} {float(d.get('score', 1)):.2f}"
        tb = draw.textbbox((0, 0), text, font=font)
        tx, ty = box[0], max(0.0, box[1] - (tb[3] - tb[1]) - 3)
        draw.rectangle((tx, ty, tx + tb[2] - tb[0] + 4, ty + tb[3] - tb[1] + 3), fill=col)
        light = sum(col) > 450
        draw.text((tx + 2 - tb[0], ty + 1 - tb[1]), text, fill=(0, 0, 0) if light else (255, 255, 255), font=font)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=GALLERY_JPEG_QUALITY, optimize=True)
    return out.getvalue(), tw, th, len(dets)
