"""report.html: one self-contained page per run (CSS, JS and pictures inline; no external URL at all).

``render_report(data) -> str`` is pure: the same ``data`` gives byte-identical HTML (no clock, no random,
charts via :mod:`validator.report.plots` with deterministic PNG bytes). The page carries a
Content-Security-Policy that forbids every fetch except ``data:`` images, so even a mail client or
browser that would follow a link cannot make it reach the network.

The ``data`` contract (everything except ``summary`` may be missing or None):

``summary`` (dict, required)
    summary.json as written: ``models`` (name, label, role, path, sha256, format, precision, input,
    input_transform, contract, classes, num_predictions, metrics[iou_type] with mAP50_95, mAP50, AR100,
    AP_small/medium/large, mean_recall, ... and per_class {cat_id: {name, n_gt, AP50, AP50_95}}, fractions),
    ``deltas`` (reference, model, metrics[iou_type] in points incl. per_class rows worst first with
    category_id/name/n_gt/dAP50/dAP50_95, changed_images), ``dataset`` (hashes, categories), ``settings``
    (incl. metric_definitions), ``versions``, ``metric``, ``qharness``.
``timing`` (dict)
    timing.json: {model: {images, preprocess_s, inference_s, postprocess_s, loop_wall_s, cached}}; other
    top-level numbers are listed as they are.
``table_md`` (str)
    the reference table markdown as printed (title line, table, notes; the "Timing" block is skipped: it
    has its own section). Without it the table is built from ``summary`` by :mod:`validator.report.tables`.
``curves`` (dict)
    {model: {iou_type: {"recall": [101], "precision": {"0.50": [101], "0.50:0.95": [101]},
    "per_class": {cat_id: {"0.50": [101]}}}}}: COCO interpolated precision at recall 0:0.01:1 (area all,
    maxDets 100), -1 where undefined; cat_id keys int or str.
``scores`` (dict)
    {model: sequence of float}: every detection's score (list or numpy array), for the score-shift plot.
``gallery`` (list, ordered, the first ``GALLERY_MAX`` are drawn)
    [{"image_id", "file_name", "path" (image file; a missing file draws a grey canvas), "width", "height",
    "gt": [{"bbox": xywh, "category_id", "segmentation": RLE | polygons | None}],
    "models": {model_name: [{"bbox", "category_id", "score", "segmentation": RLE | None}]},
    "note": optional str shown under the image}]. Detections with score >= 0.25 are drawn (boxes and
    masks, colour = class), GT boxes dashed; one panel per model (at most ``GALLERY_PANELS``, summary order).
``gate`` (dict)
    {"passed", "exit_code", "results": [{"check", "model", "metric", "iou_type", "value", "limit",
    "passed", "skipped", "reason", "ci": [lo, hi] | None, "outside_noise": bool | None, "unit": optional str}]}
``gate_markdown`` (str)
    the gate's markdown as printed (shown folded under the gate table; shown alone when ``gate`` is None).
``history`` (dict)
    {"table_md": str, "plot_png": bytes}: the trend table and plot from the history module.
``sizes`` (dict)
    {model: bytes of the model file}: the accuracy-vs-cost section (with ``timing``; three models or more).
``diagnostics`` (dict)
    diagnostics.json as written by :mod:`validator.diagnose.run` (``validate --diagnose``): per model its
    error types, collapse (with score histograms), outputs, scale_lint, op_audit, calibration_overlap,
    layers (series of [depth, SQNR dB], worst) and sensitivity rows. Collapsed classes are also flagged in
    red in the verdict header.

Sections (ids): verdict (top), table, gate, diagnose, per-class, pr, sizes, scores, gallery, history, cost, timing,
provenance. Sections without data are left out (single-model runs have no Δ charts, det runs no masks).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping

import numpy as np

from validator.report import plots

GALLERY_MAX = 12  # images in the gallery (the page must stay mailable: ~60 KB per image)
GALLERY_PANELS = 4  # models drawn per gallery image (reference first)
PER_CLASS_MODELS = 4  # compared models that get their own per-class chart (worst first)
HEATMAP_FROM = 3  # compared models from which the per-class section starts with a heatmap of them all
PER_CLASS_BARS = 30  # classes per per-class chart (the table holds them all)
TABLE_MODELS = 5  # compared models with a column in the per-class table beyond 3 models (per_class.csv: all)
PR_MODELS = 6  # models drawn in the PR, size and score plots: the reference and the worst compared ones
PR_CLASSES = 4  # worst classes with their own PR curve, per IoU type
NEUTRAL_PTS = plots.NEUTRAL_PTS
IOU_ORDER = ("bbox", "segm")
IOU_NAMES = {"bbox": "Boxes", "segm": "Masks"}

_PTS_RE = re.compile(r"^([+\-−]?\d+(?:\.\d+)?) pts$")


# ------------------------------------------------------------------------------------------ small helpers
def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _pct(v) -> str:
    f = _num(v)
    return "n/a" if f is None else f"{f * 100:.2f}%"


def _pts(v) -> str:
    f = _num(v)
    if f is None:
        return "n/a"
    f = 0.0 if abs(f) < 0.005 else f
    return f"{f:+.2f}"


def _dcls(v) -> str:
    f = _num(v)
    if f is None:
        return "na"
    if abs(f) < NEUTRAL_PTS:
        return "d0"
    if f < 0:
        return "dn2" if f <= -2 else "dn1"
    return "dp2" if f >= 2 else "dp1"


def _dcell(v, suffix: str = "") -> str:
    f = _num(v)
    sv = "" if f is None else f' data-v="{f:.6g}"'
    return f'<td class="num {_dcls(v)}"{sv}>{_e(_pts(v))}{suffix if f is not None else ""}</td>'


def _ncell(v, text: str | None = None) -> str:
    f = _num(v)
    sv = "" if f is None else f' data-v="{f:.6g}"'
    return f'<td class="num"{sv}>{_e(text if text is not None else ("n/a" if f is None else v))}</td>'


def _img(data: bytes | None, alt: str, mime: str = "image/png", cls: str = "plot", size=None) -> str:
    if not data:
        return ""
    wh = f' width="{size[0]}" height="{size[1]}"' if size else ""
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}"{wh} src="data:{mime};base64,{b64}">'


def _inline_md(s: str) -> str:
    s = _e(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def _md_blocks(md: str) -> list[tuple[str, object]]:
    """Markdown as ("table", {"header", "rows"}) and ("text", line) blocks: enough for our own tables."""
    blocks: list[tuple[str, object]] = []
    table = None
    for line in (md or "").splitlines():
        s = line.strip()
        if s.startswith("|") and s.endswith("|") and len(s) > 1:
            cells = [c.strip() for c in s[1:-1].split("|")]
            if table is None:
                table = {"header": cells, "rows": []}
                blocks.append(("table", table))
            elif not table["rows"] and all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                continue
            else:
                table["rows"].append(cells)
        else:
            table = None
            if s:
                blocks.append(("text", s))
    return blocks


def _md_cell(c: str, tag: str = "td") -> str:
    m = _PTS_RE.match(c)
    if m and tag == "td":
        v = float(m.group(1).replace("−", "-"))
        return f'<td class="num {_dcls(v)}" data-v="{v:.6g}">{_e(c)}</td>'
    num = re.fullmatch(r"[+\-−]?\d+(?:\.\d+)?%?", c)
    cls = ' class="num"' if num or c == "n/a" else ""
    return f"<{tag}{cls}>{_inline_md(c)}</{tag}>"


def _md_table(t: dict, cls: str = "data") -> str:
    head = "".join(_md_cell(c, "th") for c in t["header"])
    body = []
    for r in t["rows"]:
        rc = ' class="delta"' if r and r[0].startswith("Δ") else ""
        body.append(f"<tr{rc}>" + "".join(_md_cell(c) for c in r) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _section(sid: str, title: str, body: str, note: str = "") -> str:
    if not body:
        return ""
    n = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{n}{body}</section>'


# ------------------------------------------------------------------------------------------ run context
class _Run:
    def __init__(self, data: Mapping):
        self.data = data
        self.summary = data.get("summary") or {}
        self.models = [m for m in self.summary.get("models", []) if isinstance(m, Mapping)]
        self.by_name = {m["name"]: m for m in self.models}
        self.label = {m["name"]: (m.get("label") or m["name"]) for m in self.models}
        self.deltas = [d for d in self.summary.get("deltas", []) or [] if isinstance(d, Mapping)]
        refs = [d.get("reference") for d in self.deltas]
        roles = [m["name"] for m in self.models if m.get("role") == "float"]
        self.reference = refs[0] if refs else (roles[0] if roles else (self.models[0]["name"] if self.models else None))
        present = {t for m in self.models for t in (m.get("metrics") or {})}
        self.iou_types = [t for t in IOU_ORDER if t in present] + sorted(present - set(IOU_ORDER))
        # colours in plot order: the models drawn together get distinct colours, the same on every plot
        order = [n for n, _, _ in self._plot_order()] + [m["name"] for m in self.models]
        self.color = {}
        for n in order:
            self.color.setdefault(n, len(self.color))
        cats = (self.summary.get("dataset") or {}).get("categories") or []
        self.cat_names = {str(c["id"]): c.get("name", str(c["id"])) for c in cats if "id" in c}
        self.cat_index = {str(c["id"]): i for i, c in enumerate(cats) if "id" in c}
        for m in self.models:  # categories known only from per-class metrics
            for t in m.get("metrics", {}).values():
                for cid, pc in (t.get("per_class") or {}).items():
                    self.cat_names.setdefault(str(cid), pc.get("name", str(cid)))
                    self.cat_index.setdefault(str(cid), len(self.cat_index))

    def worst_deltas(self) -> list[Mapping]:
        """Compared models, worst headline Δ first (mAP50_95 of the first IoU type; stable)."""
        def key(ix):
            i, d = ix
            t = self.iou_types[0] if self.iou_types else "bbox"
            v = _num((d.get("metrics", {}).get(t) or {}).get("mAP50_95"))
            return (v if v is not None else 0.0, i)
        return [d for _, d in sorted(enumerate(self.deltas), key=key)]

    def _plot_order(self) -> list[tuple[str, str, None]]:
        names = [self.reference] if self.reference in self.by_name else []
        for d in self.worst_deltas():
            if d.get("model") in self.by_name and d["model"] not in names:
                names.append(d["model"])
        for m in self.models:
            if m["name"] not in names:
                names.append(m["name"])
        return [(n, self.label[n], None) for n in names]

    def plot_models(self, limit: int = PR_MODELS) -> list[tuple[str, str, int]]:
        """(name, label, colour) of the models a plot draws: the reference, then the compared models with the
        largest headline loss, ``limit`` in all."""
        return [(n, lab, self.color[n]) for n, lab, _ in self._plot_order()[:limit]]

    def subset_note(self, shown: list[str], what: str = "Drawn") -> str:
        """Says when a plot or list shows some of the models, which ones and where the rest are."""
        compared = [d.get("model") for d in self.deltas]
        n_shown = sum(1 for n in shown if n in compared)
        if n_shown >= len(compared) and len(shown) >= len(self.models):
            return ""
        ref = "the reference and " if self.reference in shown else ""
        return (f'<p class="subset">{_e(what)}: {ref}the {n_shown} compared models with the largest headline loss, '
                f"of {len(compared)} compared models; every model is in the Accuracy table.</p>")

    def legend(self, models: list[tuple[str, str, int]]) -> str:
        """The plot's colour key as HTML (full labels; wraps instead of being cut)."""
        items = "".join(f'<li><span class="sw" style="background:{plots.model_color(ci)}"></span>{_e(lab)}</li>'
                        for _, lab, ci in models)
        return f'<ul class="mlegend">{items}</ul>'


# ------------------------------------------------------------------------------------------ sections
def _skipped(r: Mapping) -> bool:
    """A check that did not apply (validator.gate marks it status "skipped", passed None)."""
    return bool(r.get("skipped")) or r.get("status") == "skipped"


def _check_label(r: Mapping) -> str:
    return str(r.get("check") or r.get("name") or r.get("id") or "")


def _verdict(run: _Run) -> str:
    gate = run.data.get("gate")
    s = run.summary
    if isinstance(gate, Mapping):
        results = [r for r in gate.get("results", []) or [] if isinstance(r, Mapping)]
        failed = [r for r in results if not r.get("passed") and not _skipped(r)]
        skipped = [r for r in results if _skipped(r)]
        passed = bool(gate.get("passed"))
        badge = ("pass", "PASS") if passed else ("fail", "FAIL")
        counts = (f"{len(results) - len(failed) - len(skipped)} of {len(results)} checks passed"
                  + (f", {len(failed)} failed" if failed else "") + (f", {len(skipped)} skipped" if skipped else "")
                  + f" · exit {_e(gate.get('exit_code', ''))}")
        fails = "".join(f"<li>{_e(_check_name(r))}: {_e(_fmt_value(r.get('value'), r))} vs limit "
                        f"{_e(_fmt_value(r.get('limit'), r))}{_noise_text(r)}</li>" for r in failed)
        detail = f'<p class="counts">{counts}</p>' + (f'<ul class="fails">{fails}</ul>' if fails else "")
    else:
        badge = ("none", "NO GATE")
        detail = '<p class="counts">No gate was given (<code>--gate gate.toml</code>): numbers only.</p>'
    ds = s.get("dataset") or {}
    metric = s.get("metric", "")
    sub = (f"metric <b>{_e(metric)}</b> · {_e(ds.get('images', '?'))} images, "
           f"{_e(ds.get('annotations_count', '?'))} annotations · qharness {_e(s.get('qharness', ''))}")
    chips = []
    for d in run.worst_deltas()[:4]:
        parts = []
        for t in run.iou_types:
            v = (d.get("metrics", {}).get(t) or {}).get("mAP50_95")
            if v is not None:
                parts.append(f'<span class="chip {_dcls(v)}">{_e(IOU_NAMES.get(t, t).lower())} mAP50-95 '
                             f'{_e(_pts(v))} pts</span>')
        ch = d.get("changed_images") or {}
        if ch.get("of"):
            parts.append(f'<span class="chip plain">{_e(ch.get("count"))} of {_e(ch.get("of"))} images changed</span>')
        chips.append(f'<div class="hl"><span class="who">{_e(run.label.get(d.get("model"), d.get("model")))} '
                     f'vs {_e(run.label.get(d.get("reference"), d.get("reference")))}</span>{"".join(parts)}</div>')
    if len(run.deltas) > 4:
        chips.append(f'<div class="hl muted">… and {len(run.deltas) - 4} more compared models (table below)</div>')
    if not run.deltas and run.models:
        chips.append(f'<div class="hl muted">single model: {_e(run.label.get(run.reference))} (no comparison)</div>')
    return (f'<header id="verdict" class="top"><div class="badge {badge[0]}">{badge[1]}</div>'
            f'<div class="head"><h1>INT8 accuracy report</h1><p class="sub">{sub}</p>{"".join(chips)}{detail}'
            f"{_collapse_alert(run)}"
            f"</div></header>")


def _headline(run: _Run) -> str:
    md = run.data.get("table_md")
    title, tables, notes = "", [], []
    if md:
        in_timing = False
        for kind, b in _md_blocks(md):
            if kind == "table":
                if not in_timing:
                    tables.append(b)
            elif isinstance(b, str):
                if b.startswith("Timing"):
                    in_timing = True
                elif b.startswith("**") and not title and not tables:
                    title = b.strip("*")
                elif not in_timing and not b.startswith("- "):
                    notes.append(b)
                elif not in_timing:
                    notes.append(b[2:])
    elif run.models:
        from validator.report import tables as md_tables

        header, body = md_tables.rows(run.summary)
        title = md_tables.title(run.summary)
        tables.append({"header": header, "rows": body})
    if not tables:
        return ""
    body = "".join(_md_table(t, "data headline") for t in tables)
    if notes:
        body += '<ul class="notes">' + "".join(f"<li>{_inline_md(n)}</li>" for n in notes) + "</ul>"
    legend = "" if not run.deltas else (
              f'<p class="legend">Δ in points, model − reference: <span class="dn2">≤ −2</span> '
              f'<span class="dn1">loss</span> <span class="d0">within ±{NEUTRAL_PTS:g} (neutral)</span> '
              f'<span class="dp1">gain</span> <span class="dp2">≥ +2</span></p>')
    return _section("table", "Accuracy", (f'<p class="title">{_inline_md(title)}</p>' if title else "") + body + legend)


def _check_name(r: Mapping) -> str:
    bits = [_check_label(r) or "check"]
    if r.get("metric"):
        bits.append(str(r["metric"]) + (f" ({r['iou_type']})" if r.get("iou_type") else ""))
    if r.get("model"):
        bits.append(str(r["model"]))
    return " · ".join(bits)


def _fmt_value(v, r: Mapping) -> str:
    f = _num(v)
    if f is None:
        return "n/a" if v is None else str(v)
    unit = r.get("unit") or ""
    text = f"{f:.2f}" if unit in ("pts", "%") else f"{f:.4g}"
    return text + (f" {unit}" if unit else "")


def _noise_text(r: Mapping) -> str:
    """The gate's own wording (stdout, junit.xml, table.md): right for a pass and for a failure."""
    o = r.get("outside_noise")
    if o is None:
        return ""
    return ", clear of noise" if o else ", within noise"


def _class_summary(r: Mapping) -> str:
    """A max_class_drop result's classes: the failed ones, those past the limit within noise, the too small."""
    classes = [c for c in r.get("classes") or [] if isinstance(c, Mapping)]
    if not classes:
        return ""
    out = []
    for status, what in (("failed", "failed"), ("within noise", "past the limit, within noise"),
                         ("too small", "too small to judge")):
        these = [c for c in classes if c.get("status") == status]
        if these:
            names = ", ".join(f"{c.get('name')} {_num(c.get('drop')) or 0:.2f}" for c in these[:6])
            more = f" +{len(these) - 6}" if len(these) > 6 else ""
            out.append(f"{what}: {names}{more}")
    judged = [c for c in classes if c.get("status") in ("passed", "within noise", "failed")]
    out.append(f"{len(judged)} of {len(classes)} classes judged")
    return "<br>".join(_e(x) for x in out)


def _gate(run: _Run) -> str:
    gate = run.data.get("gate")
    gmd = run.data.get("gate_markdown")
    if not isinstance(gate, Mapping):
        return _section("gate", "Gate checks", f"<pre>{_e(gmd)}</pre>") if gmd else ""
    rows = []
    level = f"{_num(gate.get('confidence')) * 100:g}% " if _num(gate.get("confidence")) else ""
    for r in gate.get("results", []) or []:
        if not isinstance(r, Mapping):
            continue
        if _skipped(r):
            status, cls = "skipped", "skip"
        elif r.get("passed"):
            status, cls = "pass", "ok"
        else:
            status, cls = "FAIL", "bad"
        ci = r.get("ci")
        ci_txt = (f"[{_fmt_value(ci[0], r)}, {_fmt_value(ci[1], r)}]"
                  if isinstance(ci, (list, tuple)) and len(ci) == 2 else "—")
        what = " · ".join(x for x in (str(r.get("metric") or ""), str(r.get("iou_type") or "")) if x)
        value = "—" if _skipped(r) else (f"{_fmt_value(r.get('value'), r)} {r.get('op') or ''} "
                                         f"{_fmt_value(r.get('limit'), r)}")
        note = _e(r.get("reason") or "") if _skipped(r) else (_class_summary(r) or _e(r.get("detail") or ""))
        rows.append(f'<tr class="{cls}"><td class="status">{status}{_e(_noise_text(r))}</td>'
                    f'<td>{_e(_check_label(r))}<br><span class="muted">{_e(what)}</span></td>'
                    f'<td>{_e(r.get("model") or "")}</td><td class="num">{_e(value)}</td>'
                    f'<td class="num">{_e(ci_txt)}</td><td class="reason">{note}</td></tr>')
    table = ('<table class="data gate"><thead><tr><th>result</th><th>check</th><th>model</th>'
             f'<th>value vs limit</th><th>{_e(level)}CI (bootstrap)</th><th>note</th>'
             f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if gmd:
        table += f"<details><summary>gate output as printed</summary><pre>{_e(gmd)}</pre></details>"
    note = ("A check passes or fails on its value against the limit (a per-class check on each class's own "
            "interval); <i>clear of noise</i>: the bootstrap interval over images lies entirely on one side of the "
            "limit, so another draw of the images would give the same result; <i>within noise</i>: it holds the "
            "limit.")
    return _section("gate", "Gate checks", table, note)


def _per_class(run: _Run) -> str:
    if not run.models:
        return ""
    parts = []
    shown = run.worst_deltas()[:PER_CLASS_MODELS]
    if len(run.deltas) >= HEATMAP_FROM:
        parts.append(_heatmap(run))
        shown = shown[:1]
    for d in shown:
        panels = []
        for t in run.iou_types:
            rows = list((d.get("metrics", {}).get(t) or {}).get("per_class") or [])
            rows = sorted(rows, key=lambda r: (_num(r.get("dAP50_95")) if _num(r.get("dAP50_95")) is not None
                                               else math.inf, str(r.get("category_id"))))
            if rows:
                panels.append({"title": f"{IOU_NAMES.get(t, t)}: Δ AP@0.5:0.95, worst first",
                               "rows": [{"name": r.get("name", r.get("category_id")), "n_gt": r.get("n_gt"),
                                         "value": r.get("dAP50_95")} for r in rows]})
        if panels:
            png = plots.per_class_bars(panels, delta=True, max_classes=PER_CLASS_BARS)
            n = max(len(p["rows"]) for p in panels)
            cap = f" (worst {PER_CLASS_BARS} of {n}; all in the table)" if n > PER_CLASS_BARS else ""
            parts.append(f'<figure><figcaption>{_e(run.label.get(d.get("model"), d.get("model")))} − '
                         f'{_e(run.label.get(d.get("reference"), d.get("reference")))}{_e(cap)}; '
                         f'GT instances in brackets</figcaption>'
                         f'{_img(png, "per-class delta AP " + str(d.get("model")))}</figure>')
    if HEATMAP_FROM > len(run.deltas) > len(shown):
        parts.append(f'<p class="note">Charts for the {len(shown)} compared models with the largest headline loss; '
                     f'the table holds all {len(run.deltas)}.</p>')
    if not run.deltas:  # single model: per-class AP instead of deltas
        ref = run.by_name.get(run.reference) or run.models[0]
        panels = []
        for t in run.iou_types:
            pc = (ref.get("metrics", {}).get(t) or {}).get("per_class") or {}
            rows = sorted(({"name": v.get("name", k), "n_gt": v.get("n_gt"),
                            "value": (_num(v.get("AP50_95")) or 0.0) * 100, "k": str(k)} for k, v in pc.items()),
                          key=lambda r: (r["value"], r["k"]))
            if rows:
                panels.append({"title": f"{IOU_NAMES.get(t, t)}: AP@0.5:0.95, lowest first", "rows": rows})
        if panels:
            png = plots.per_class_bars(panels, delta=False, max_classes=PER_CLASS_BARS)
            parts.append(f'<figure>{_img(png, "per-class AP")}</figure>')
    for t in run.iou_types:
        parts.append(_per_class_table(run, t))
    return _section("per-class", "Per class", "".join(parts),
                    "Click a column header to sort. AP in %, Δ in points (model − reference).")


def _heatmap(run: _Run) -> str:
    """Every compared model x the classes that lost most in any of them (worst first)."""
    deltas = run.worst_deltas()
    prefix, short = _short_names([str(d.get("model")) for d in deltas])
    panels = []
    for t in run.iou_types:
        table: dict[str, dict] = {}
        names: dict[str, str] = {}
        for j, d in enumerate(deltas):
            for r in (d.get("metrics", {}).get(t) or {}).get("per_class") or []:
                cid = str(r.get("category_id"))
                names[cid] = str(r.get("name", cid))
                table.setdefault(cid, {})[j] = _num(r.get("dAP50_95"))
        if not table:
            continue

        def worst(cid, table=table):
            vals = [v for v in table[cid].values() if v is not None]
            return (min(vals) if vals else math.inf, cid)
        cats = sorted(table, key=worst)[:PER_CLASS_BARS]
        values = [[np.nan if table[c].get(j) is None else table[c][j] for j in range(len(deltas))] for c in cats]
        panels.append({"title": f"{IOU_NAMES.get(t, t)}: Δ AP@0.5:0.95", "classes": [names[c] for c in cats],
                       "models": short, "values": values})
    if not panels:
        return ""
    n = max(len(p["classes"]) for p in panels)
    cut = f" (names without their common beginning <code>{_e(prefix)}</code>)" if prefix else ""
    return (f'<figure><figcaption>All {len(deltas)} compared models (columns, worst headline first{cut}) × the '
            f'{n} classes that lost most in any of them; the worst model\'s own chart follows.</figcaption>'
            f'{_img(plots.per_class_heatmap(panels), "per-class delta AP, all compared models")}</figure>')


def _short_names(names: list[str]) -> tuple[str, list[str]]:
    """(common beginning, the names without it), cut at a '.', '-' or '_' so that a name stays readable."""
    import os.path

    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    cut = max(prefix.rfind(ch) for ch in ".-_") + 1 if prefix else 0
    prefix = prefix[:cut]
    if not prefix or any(len(n) == len(prefix) for n in names):
        return "", list(names)
    return prefix, [n[len(prefix):] for n in names]


def _per_class_table(run: _Run, t: str) -> str:
    models = [m for m in run.models if (m.get("metrics") or {}).get(t)]
    if not models:
        return ""
    cats: dict[str, dict] = {}
    for m in models:
        for cid, pc in ((m["metrics"][t].get("per_class")) or {}).items():
            c = cats.setdefault(str(cid), {"name": pc.get("name", cid), "n_gt": pc.get("n_gt")})
            c[m["name"]] = pc
    if not cats:
        return ""
    deltas = [d for d in run.worst_deltas() if (d.get("metrics", {}).get(t) or {}).get("per_class")]
    drows = {d["model"]: {str(r.get("category_id")): r for r in d["metrics"][t]["per_class"]} for d in deltas}
    wide = len(models) <= 3
    note = ""
    if not wide:  # the reference's AP and the worst compared models' deltas: a table that fits the page
        shown = deltas[:TABLE_MODELS]
        note = run.subset_note([run.reference] + [d["model"] for d in shown], "Columns")
        note = note.replace("every model is in the Accuracy table", "per_class.csv holds every model")
        models = [m for m in models if m["name"] == run.reference] or models[:1]
        deltas = shown
    head = ['<th>class</th><th>id</th><th title="ground-truth instances">GT</th>']
    for m in models:
        lab = _e(run.label[m["name"]])
        if wide:
            head.append(f'<th title="{lab}">{_e(m["name"])}<br>AP@.5</th>')
        head.append(f'<th title="{lab}">{_e(m["name"])}<br>AP@.5:.95</th>')
    for d in deltas:
        if wide:
            head.append(f'<th>Δ {_e(d["model"])}<br>AP@.5</th>')
        head.append(f'<th>Δ {_e(d["model"])}<br>AP@.5:.95</th>')
    order = list(cats)
    if deltas:  # worst first for the first (worst) compared model
        worst = next((d["model"] for d in run.worst_deltas() if d["model"] in drows), deltas[0]["model"])
        first = drows[worst]

        def key(c):
            v = _num((first.get(c) or {}).get("dAP50_95"))
            return (v if v is not None else math.inf, c)
        order.sort(key=key)
    body = []
    for cid in order:
        c = cats[cid]
        cells = [f'<td>{_e(c["name"])}</td>', _ncell(_num(cid), cid), _ncell(c.get("n_gt"))]
        for m in models:
            pc = c.get(m["name"]) or {}
            if wide:
                cells.append(_ncell(_pct_num(pc.get("AP50")), _pct(pc.get("AP50"))))
            cells.append(_ncell(_pct_num(pc.get("AP50_95")), _pct(pc.get("AP50_95"))))
        for d in deltas:
            r = drows[d["model"]].get(cid) or {}
            if wide:
                cells.append(_dcell(r.get("dAP50")))
            cells.append(_dcell(r.get("dAP50_95")))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h3>{_e(IOU_NAMES.get(t, t))}: {len(cats)} classes</h3>{note}<div class="scroll">'
            f'<table class="data sortable perclass"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _pct_num(v):
    f = _num(v)
    return None if f is None else f * 100


def _pr(run: _Run) -> str:
    curves = run.data.get("curves") or {}
    if not curves:
        return ""
    models = [m for m in run.plot_models() if m[0] in curves]
    parts = []
    png = plots.pr_overall(curves, models, run.iou_types)
    if png:
        parts.append(f'<figure>{_img(png, "precision-recall curves")}{run.legend(models)}'
                     f'{run.subset_note([m[0] for m in models])}</figure>')
    picks = []
    worst = run.worst_deltas()
    for t in run.iou_types:
        if worst:
            rows = list((worst[0].get("metrics", {}).get(t) or {}).get("per_class") or [])
            rows.sort(key=lambda r: (_num(r.get("dAP50_95")) if _num(r.get("dAP50_95")) is not None else math.inf,
                                     str(r.get("category_id"))))
            for r in rows[:PR_CLASSES]:
                picks.append((t, str(r.get("category_id")),
                              f"{IOU_NAMES.get(t, t).lower()}: {r.get('name')}",
                              f"Δ AP@.5:.95 {_pts(r.get('dAP50_95'))} · @.5 {_pts(r.get('dAP50'))}"))
    png = plots.pr_classes(curves, models, picks) if picks else None
    if png:
        parts.append(f'<figure><figcaption>Worst classes of {_e(run.label.get(worst[0].get("model")))} by '
                     f'Δ AP@0.5:0.95: solid IoU 0.50, dashed averaged over IoU 0.50:0.95 (the curve each Δ in '
                     f'a panel title is read from)</figcaption>{_img(png, "precision-recall curves, worst classes")}'
                     f'{run.legend(models)}</figure>')
    return _section("pr", "Precision-recall", "".join(parts),
                    "COCO's interpolated precision at recall 0:0.01:1 (area all, maxDets 100); solid IoU 0.50, "
                    "dashed averaged over IoU 0.50:0.95.")


def _sizes(run: _Run) -> str:
    keys = (("AP_small", "small"), ("AP_medium", "medium"), ("AP_large", "large"))
    if not run.iou_types:
        return ""
    head = "<th>model</th>" + "".join(f"<th>{_e(IOU_NAMES.get(t, t))} AP {k}</th>" for t in run.iou_types
                                      for _, k in keys)
    rows = []
    for m in run.models:
        cells = [f"<td>{_e(run.label[m['name']])}</td>"]
        for t in run.iou_types:
            mt = (m.get("metrics") or {}).get(t) or {}
            cells += [_ncell(_pct_num(mt.get(k)), _pct(mt.get(k))) for k, _ in keys]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    for d in run.deltas:
        cells = [f"<td>Δ {_e(d.get('model'))} − {_e(d.get('reference'))} (pts)</td>"]
        for t in run.iou_types:
            mt = (d.get("metrics") or {}).get(t) or {}
            cells += [_dcell(mt.get(k)) for k, _ in keys]
        rows.append('<tr class="delta">' + "".join(cells) + "</tr>")
    body = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    png = plots.size_deltas(run.worst_deltas()[:PR_MODELS], run.iou_types, run.label, run.color)
    if png:
        body += f'<figure>{_img(png, "AP by object size, deltas")}</figure>'
    return _section("sizes", "Object size: small / medium / large", body,
                    "COCO areas: small &lt; 32², medium 32²–96², large &gt; 96² pixels; n/a where the data has none.")


def _scores(run: _Run) -> str:
    scores = run.data.get("scores") or {}
    models = [m for m in run.plot_models() if m[0] in scores]
    if not models:
        return ""
    arrays = [(lab, ci, np.asarray(scores[n], dtype=float).ravel()) for n, lab, ci in models]
    png = plots.score_hist(arrays, plots.CONFIDENT)
    every = [(run.label[m["name"]], np.asarray(scores[m["name"]], dtype=float).ravel()) for m in run.models
             if m["name"] in scores]  # the table holds every model
    rows = []
    for lab, s in every:
        q = np.quantile(s, [0.5, 0.9, 0.99]) if s.size else [None] * 3
        hi = s[s >= plots.CONFIDENT]
        rows.append(f"<tr><td>{_e(lab)}</td>{_ncell(s.size)}{_ncell(hi.size)}"
                    + "".join(_ncell(v, "n/a" if v is None else f"{v:.3f}") for v in q)
                    + _ncell(None if not hi.size else float(hi.mean()), "n/a" if not hi.size else f"{hi.mean():.3f}")
                    + "</tr>")
    table = ('<table class="data"><thead><tr><th>model</th><th>detections</th><th>score ≥ 0.25</th><th>median</th>'
             '<th>p90</th><th>p99</th><th>mean of ≥ 0.25</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    fig = (f'<figure>{_img(png, "score distributions")}{run.legend(models)}'
           f'{run.subset_note([m[0] for m in models])}</figure>') if png else ""
    return _section("scores", "Score distribution", fig + table,
                    "INT8 models often have few distinct scores and a shifted scale: a shift moves every "
                    "operating point (confidence thresholds tuned on the float model).")


def _gallery(run: _Run) -> str:
    entries = [g for g in (run.data.get("gallery") or []) if isinstance(g, Mapping)][:GALLERY_MAX]
    if not entries:
        return ""
    order = {n: i for i, n in enumerate([m[0] for m in run.plot_models()] + [m["name"] for m in run.models])}
    used_cats: set[str] = set()
    items = []
    for g in entries:
        names = sorted((g.get("models") or {}), key=lambda n: (order.get(n, len(order)), n))[:GALLERY_PANELS]
        gt = [a for a in g.get("gt") or [] if a.get("bbox")]
        used_cats.update(str(a.get("category_id")) for a in gt)
        panels = []
        for n in names:
            dets = g["models"][n] or []
            jpg, w, h, count = plots.gallery_panel(g.get("path"), g.get("width") or 0, g.get("height") or 0, gt, dets,
                                                   run.cat_index, run.cat_names)
            used_cats.update(str(d.get("category_id")) for d in dets if float(d.get("score", 1)) >= plots.CONFIDENT)
            alt = f"{n} on image {g.get('image_id')}"
            dot = plots.model_color(run.color.get(n, 0))
            panels.append(f'<div class="panel">{_img(jpg, alt, "image/jpeg", "shot", (w, h))}'
                          f'<div class="cap"><span class="dot" style="background:{dot}"></span>'
                          f'{_e(run.label.get(n, n))} · {count} det.</div></div>')
        note = f'<div class="gnote">{_e(g.get("note"))}</div>' if g.get("note") else ""
        items.append(f'<div class="gitem"><div class="ghead">image {_e(g.get("image_id"))} · '
                     f'<code>{_e(g.get("file_name", ""))}</code> · {len(gt)} GT</div>'
                     f'<div class="panels">{"".join(panels)}</div>{note}</div>')
    legend = "".join(
        f'<span class="cls"><span class="sw" style="background:'
        f'{plots.CLASS_COLORS[run.cat_index.get(c, 0) % len(plots.CLASS_COLORS)]}"></span>{_e(run.cat_names.get(c, c))}'
        f"</span>" for c in sorted(used_cats, key=lambda c: (run.cat_index.get(c, 1 << 30), c)) if c != "None")
    total = len(run.data.get("gallery") or [])
    more = f" (first {len(entries)} of {total})" if total > len(entries) else ""
    shown = [n for n, _, _ in run.plot_models(GALLERY_PANELS)]
    return _section("gallery", "Images that changed most" + more,
                    f'{run.subset_note(shown, "Each image shows")}<div class="legendrow">{legend}</div>'
                    f'<div class="gallery">' + "".join(items) + "</div>",
                    "Detections with score ≥ 0.25 (boxes and masks, colour = class, label = class and score); "
                    "ground truth dashed white.")


def _history(run: _Run) -> str:
    h = run.data.get("history")
    if not isinstance(h, Mapping):
        return ""
    parts = []
    if h.get("plot_png"):
        parts.append(f'<figure>{_img(h["plot_png"], "trend plot")}</figure>')
    for kind, b in _md_blocks(h.get("table_md") or ""):
        parts.append(_md_table(b) if kind == "table" else f"<p>{_inline_md(str(b))}</p>")
    return _section("history", "Trend", '<div class="scroll">' + "".join(parts) + "</div>")


# ------------------------------------------------------------------------------------------ diagnosis
DIAG_OPEN = 2  # model cards of the Diagnosis section shown unfolded (worst first); the rest fold
DIAG_LAYERS = 10  # worst layers listed per model
TIDE_ORDER = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_NAMES = {"Cls": "classification", "Loc": "localisation", "Both": "cls + loc", "Dupe": "duplicate",
              "Bkg": "background", "Miss": "missed"}


def _diag_entries(run: _Run) -> list[Mapping]:
    """The diagnosed models, worst headline Δ first (the table's order for the rest)."""
    doc = run.data.get("diagnostics")
    if not isinstance(doc, Mapping):
        return []
    entries = [m for m in doc.get("models") or [] if isinstance(m, Mapping)]
    rank = {d.get("model"): i for i, d in enumerate(run.worst_deltas())}
    return sorted(entries, key=lambda m: rank.get(m.get("model"), len(rank)))


def _or_na(v) -> str:
    return "n/a" if v is None else str(v)


def _f(v, fmt: str = ".2f", none: str = "n/a") -> str:
    f = _num(v)
    return none if f is None else format(f, fmt)


def _collapse_alert(run: _Run) -> str:
    """Class collapse, at the top of the page (red), one line per model, linking to its histograms."""
    items = []
    for m in _diag_entries(run):
        cs = [c for c in m.get("collapse") or [] if isinstance(c, Mapping)]
        if not cs:
            continue
        parts = ", ".join(f"{c.get('name')}{'' if c.get('iou_type') == 'bbox' else ' (masks)'} "
                          f"{_f((_num(c.get('reference_ap')) or 0) * 100)} → {_f((_num(c.get('ap')) or 0) * 100)}"
                          for c in cs[:8]) + (f" … +{len(cs) - 8}" if len(cs) > 8 else "")
        zero = sum(1 for c in cs if c.get("kind") == "collapsed to ~0")
        kinds = ", ".join(x for x in (f"{zero} to ~0" if zero else "", f"{len(cs) - zero} lost more than half"
                                      if len(cs) > zero else "") if x)
        items.append(f"<li><b>{_e(run.label.get(m.get('model'), m.get('model')))}</b>: {len(cs)} classes ({_e(kinds)}):"
                     f" {_e(parts)}</li>")
    if not items:
        return ""
    return (f'<div class="alert"><b>Class collapse</b> (<a href="#diagnose">diagnosis</a>): classes whose AP@0.5:0.95 '
            f'fell below half the float model\'s or to ~0 (float → INT8, points)<ul>{"".join(items[:6])}</ul></div>')


def _lost_cell(dap) -> str:
    """A TIDE dAP change (INT8 - float) as a Δ cell: more mAP lost to the error is a loss (red)."""
    v = _num(dap)
    return _dcell(None if v is None else -v)


def _diag_overview(run: _Run, entries: list[Mapping]) -> str:
    rows = []
    for m in entries:
        et = ((m.get("error_types") or {}).get("bbox") or {}).get("delta") or {}
        d75 = (et.get("0.75") or {}).get("dap") or {}
        d50 = (et.get("0.5") or {}).get("dap") or {}
        outs = {o.get("role"): o for o in m.get("outputs") or [] if isinstance(o, Mapping)}
        lint = [f for f in (m.get("scale_lint") or {}).get("findings") or [] if f.get("level") == "warn"]
        audit = m.get("op_audit") or {}
        ov = m.get("calibration_overlap") or {}
        sens = m.get("sensitivity") or {}
        best = next((r for r in sens.get("rows") or [] if r.get("win") is not None), None)
        ops = ("n/a" if not audit else "all int8" if audit.get("fully_integer")
               else f"{audit.get('float', 0)} float, {audit.get('int16', 0)} int16")
        rows.append(
            f"<tr><td>{_e(run.label.get(m.get('model'), m.get('model')))}</td>"
            f"{_lost_cell(d75.get('Loc'))}{_lost_cell(d75.get('Cls'))}{_lost_cell(d50.get('Miss'))}"
            f"{_ncell((outs.get('boxes') or {}).get('sqnr_db'), _f((outs.get('boxes') or {}).get('sqnr_db'), '.1f'))}"
            f"{_ncell((outs.get('scores') or {}).get('sqnr_db'), _f((outs.get('scores') or {}).get('sqnr_db'), '.1f'))}"
            f'<td class="{"bad" if lint else ""}">{"WARN: " + _e(str(len(lint))) if lint else "clean"}</td>'
            f"<td>{_e(ops)}</td>"
            f'<td class="{"bad" if ov.get("evaluated") else ""}">'
            f'{_e(_or_na(ov.get("evaluated")) if ov else "n/a")}</td>'
            f"<td>{_e(len(m.get('collapse') or []))}</td>"
            + (f"<td>{_e(best.get('op'))} #{_e(best.get('depth'))} in {_e(best.get('precision'))}: "
               f"{_e(_pts(best.get('win')))} pts</td>" if best else '<td class="na">n/a</td>') + "</tr>")
    return ('<div class="scroll"><table class="data sortable diag"><thead><tr><th>model</th>'
            '<th title="INT8 minus float, as a change of AP: negative = more mAP lost to this error">'
            "localisation<br>@IoU 0.75</th><th>classification<br>@IoU 0.75</th><th>missed<br>@IoU 0.5</th>"
            "<th>boxes<br>SQNR dB</th><th>scores<br>SQNR dB</th><th>output-<br>scale lint</th><th>ops</th>"
            "<th>calibration<br>images<br>evaluated</th><th>collapsed<br>classes</th><th>best layer kept<br>in higher "
            "precision</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
            '<p class="legend">Error columns: the change in mAP lost to that error type (TIDE dAP), float minus '
            "INT8, in points: red = INT8 loses more to it. A collapsed model makes few errors of any kind because it "
            "makes few detections: read its AP first.</p>")


def _diag_tide(et: Mapping) -> str:
    head = "".join(f"<th>float<br>@{_e(p)}</th><th>INT8<br>@{_e(p)}</th><th>Δ<br>@{_e(p)}</th>"
                   for p in ("0.5", "0.75"))
    rows = []
    for k in TIDE_ORDER:
        cells = []
        for pos in ("0.5", "0.75"):
            r = ((et.get("reference") or {}).get(pos) or {}).get("dap", {}).get(k)
            g = ((et.get("model") or {}).get(pos) or {}).get("dap", {}).get(k)
            d = ((et.get("delta") or {}).get(pos) or {}).get("dap", {}).get(k)
            cells.append(_ncell(r, _f(r)) + _ncell(g, _f(g)) + _lost_cell(d))
        rows.append(f"<tr><td>{_e(TIDE_NAMES[k])} <span class=\"muted\">({k})</span></td>{''.join(cells)}</tr>")
    ap = []
    for pos in ("0.5", "0.75"):
        r = ((et.get("reference") or {}).get(pos) or {}).get("ap")
        g = ((et.get("model") or {}).get(pos) or {}).get("ap")
        ap.append(_ncell(r, _f(r)) + _ncell(g, _f(g)) + _dcell(None if _num(r) is None or _num(g) is None
                                                                else _num(g) - _num(r)))
    rows.append(f'<tr class="delta"><td>AP</td>{"".join(ap)}</tr>')
    return (f'<table class="data"><thead><tr><th>mAP lost to (dAP, pts)</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _diag_model(run: _Run, m: Mapping, open_: bool) -> str:
    name = run.label.get(m.get("model"), m.get("model"))
    parts = []
    if m.get("skipped"):
        parts.append(f'<p class="muted">{_e(m["skipped"])}</p>')
    for t, et in (m.get("error_types") or {}).items():
        parts.append(f"<h3>Error types, {_e(IOU_NAMES.get(t, t).lower())} (TIDE, at IoU 0.5 and 0.75)</h3>"
                     + _diag_tide(et))
    outs = [o for o in m.get("outputs") or [] if isinstance(o, Mapping)]
    if outs:
        rows = "".join(f"<tr><td>{_e(o.get('role'))}</td>{_ncell(o.get('sqnr_db'), _f(o.get('sqnr_db')))}"
                       f"{_ncell(o.get('max_abs_error'), _f(o.get('max_abs_error'), '.4g'))}"
                       f"{_ncell(o.get('mean_abs_error'), _f(o.get('mean_abs_error'), '.4g'))}"
                       f"{_ncell(o.get('bias'), _f(o.get('bias'), '+.4g'))}<td>{_e(o.get('unit'))}</td></tr>"
                       for o in outs)
        parts.append("<h3>Per-output error (same preprocessed images, INT8 vs float)</h3>"
                     '<table class="data"><thead><tr><th>output role</th><th>SQNR dB</th><th>max |error|</th>'
                     f"<th>mean |error|</th><th>bias (mean INT8 − float)</th><th>unit</th></tr></thead><tbody>{rows}"
                     "</tbody></table>")
    elif m.get("outputs_skipped"):
        parts.append(f'<p class="muted">Per-output error: {_e(m["outputs_skipped"])}</p>')
    lint = m.get("scale_lint") or {}
    if lint.get("outputs"):
        rows = "".join(f"<tr><td><code>{_e(o.get('output'))}</code></td><td>{_e(', '.join(o.get('roles') or []))}</td>"
                       f"<td>{_e(o.get('dtype'))}</td>{_ncell(o.get('scale'), _f(o.get('scale'), '.6g'))}"
                       f"{_ncell(o.get('zero_point'))}"
                       f"{_ncell(o.get('score_levels'), _f(o.get('score_levels'), 'g', '—'))}"
                       f"{_ncell(o.get('box_step_px'), _f(o.get('box_step_px'), '.4g', '—'))}</tr>"
                       for o in lint["outputs"])
        finds = "".join(f'<li class="{"warn" if f.get("level") == "warn" else ""}">'
                        f'{"WARNING: " if f.get("level") == "warn" else ""}{_e(f.get("text"))}</li>'
                        for f in lint.get("findings") or [])
        parts.append("<h3>Output-scale lint</h3>"
                     '<table class="data"><thead><tr><th>quantized output</th><th>holds</th><th>type</th><th>scale</th>'
                     "<th>zero point</th><th>score levels in [0, 1]</th><th>box step px</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>" + (f'<ul class="notes">{finds}</ul>' if finds else ""))
    audit = m.get("op_audit")
    if isinstance(audit, Mapping):
        if audit.get("fully_integer"):
            txt = f"all {_e(audit.get('ops'))} ops integer: nothing falls back to the CPU."
        else:
            fl = ", ".join(f"{k} ×{v}" for k, v in (audit.get("float_ops") or {}).items()) or "none"
            i16 = ", ".join(f"{k} ×{v}" for k, v in (audit.get("int16_ops") or {}).items()) or "none"
            names = audit.get("float_op_names") or []
            txt = (f"<b>{_e(audit.get('float'))} float ops</b> ({_e(fl)}), {_e(audit.get('int16'))} int16 ({_e(i16)}), "
                   f"quantize/dequantize inside the graph {_e(audit.get('internal_quantize'))}/"
                   f"{_e(audit.get('internal_dequantize'))}, of {_e(audit.get('ops'))} ops ({_e(audit.get('format'))})"
                   + (f'<br><span class="muted">float: {_e(", ".join(names[:12]))}'
                      f'{" …" if len(names) > 12 else ""}</span>' if names else ""))
        parts.append(f"<h3>Op audit</h3><p>{txt}</p>")
    ov = m.get("calibration_overlap")
    if isinstance(ov, Mapping) and ov.get("evaluated") is None:
        parts.append(f'<h3>Calibration overlap</h3><p class="muted">{_e(ov.get("calibration_images"))} calibration '
                     f'images, overlap {_e(ov.get("by"))}.</p>')
    elif isinstance(ov, Mapping):
        cls = "error" if ov.get("evaluated") else ""
        parts.append(f'<h3>Calibration overlap</h3><p class="{cls}">{_e(ov.get("evaluated"))} of its '
                     f'{_e(ov.get("calibration_images"))} calibration images are evaluated here '
                     f'(by {_e(ov.get("by"))}; {_e(ov.get("evaluated_by_name"))} share a file name)'
                     + (": its numbers are optimistic." if ov.get("evaluated") else ".") + "</p>")
    lay = m.get("layers")
    if isinstance(lay, Mapping) and lay.get("worst"):
        rows = "".join(f"<tr>{_ncell(w.get('depth'))}<td>{_e(w.get('op'))}</td>"
                       f"<td><code>{_e(str(w.get('tensor'))[:90])}</code></td>"
                       f"{_ncell(w.get('sqnr_db'), _f(w.get('sqnr_db')))}"
                       f"{_ncell(w.get('drop_db'), _f(w.get('drop_db'), '+.2f'))}</tr>"
                       for w in lay["worst"][:DIAG_LAYERS])
        parts.append(f"<h3>Layers adding most error ({_e(lay.get('tensors'))} tensors matched by name, "
                     f"{_e(lay.get('images'))} images)</h3>"
                     '<table class="data"><thead><tr><th>depth</th><th>op</th><th>output tensor</th><th>SQNR dB</th>'
                     f"<th>dB below its inputs</th></tr></thead><tbody>{rows}</tbody></table>")
    elif m.get("layers_skipped"):
        parts.append(f'<p class="muted">Layer-wise error: {_e(m["layers_skipped"])}</p>')
    sens = m.get("sensitivity")
    if isinstance(sens, Mapping) and sens.get("rows"):
        rows = "".join(f"<tr>{_ncell(r.get('depth'))}<td>{_e(r.get('op'))}</td>"
                       f"<td><code>{_e(str(r.get('tensor'))[:90])}</code></td><td>{_e(r.get('precision'))}</td>"
                       + (f"{_ncell(r.get('score'), _f(r.get('score')))}{_dcell(r.get('win'))}"
                          if r.get("win") is not None else f'<td class="na" colspan="2">{_e(r.get("error"))}</td>')
                       + "</tr>" for r in sens["rows"])
        parts.append(f"<h3>Layer sensitivity: one layer kept in {_e(sens.get('precision'))}, the rest INT8</h3>"
                     f'<p class="note">{_e(sens.get("metric"))} on {_e(sens.get("images"))} images '
                     f'({_e(sens.get("split"))}); this variant rebuilt as is: {_f(sens.get("baseline"))}.</p>'
                     '<table class="data"><thead><tr><th>depth</th><th>op</th><th>tensor</th><th>kept in</th>'
                     f"<th>mAP50-95</th><th>win, pts</th></tr></thead><tbody>{rows}</tbody></table>")
    elif m.get("sensitivity_skipped"):
        parts.append(f'<p class="muted">Layer sensitivity: {_e(m["sensitivity_skipped"])}</p>')
    return (f'<details class="dmodel"{" open" if open_ else ""}><summary>{_e(name)}</summary>'
            f'{"".join(parts)}</details>')


def _diagnose(run: _Run) -> str:
    doc = run.data.get("diagnostics")
    if not isinstance(doc, Mapping):
        return ""
    if doc.get("skipped"):
        return _section("diagnose", "Diagnosis", f'<p class="muted">{_e(doc["skipped"])}</p>')
    entries = _diag_entries(run)
    if not entries:
        return ""
    body = [_diag_overview(run, entries)]
    series = [(run.label.get(m["model"], m["model"]), run.color.get(m["model"], 0), m["layers"]["series"])
              for m in entries if isinstance(m.get("layers"), Mapping) and m["layers"].get("series")][:PR_MODELS]
    png = plots.sqnr_depth(series)
    if png:
        body.append(f'<figure><figcaption>SQNR of each tensor of the INT8 model against its float parent, along the '
                    f'graph</figcaption>{_img(png, "layer-wise SQNR along the graph")}'
                    f'{run.legend([("", lab, ci) for lab, ci, _ in series])}</figure>')
    ref = doc.get("reference")
    for m in [m for m in entries if m.get("collapse")][:3]:  # the worst three models with collapsed classes
        panels = [{"title": f"{c.get('name')}" + ("" if c.get("iou_type") == "bbox" else " (masks)"),
                   "bins": c.get("bins", 20), "reference": (c.get("score_histogram") or {}).get("reference"),
                   "model": (c.get("score_histogram") or {}).get("model"), "labels": ("float", "INT8"),
                   "colors": (run.color.get(ref, 0), run.color.get(m["model"], 1))} for c in m["collapse"]]
        hist = plots.collapse_hists(panels[:9])
        if hist:
            label, mc = run.label.get(m["model"], m["model"]), run.color.get(m["model"], 1)
            body.append(f'<figure><figcaption class="error">Collapsed classes of {_e(label)}: score histogram of '
                        f'each class\'s detections, float vs INT8{" (first 9)" if len(panels) > 9 else ""}</figcaption>'
                        f'{_img(hist, "collapsed class scores")}'
                        f'{run.legend([("", "float", run.color.get(ref, 0)), ("", label, mc)])}'
                        "</figure>")
    body += [_diag_model(run, m, i < DIAG_OPEN) for i, m in enumerate(entries)]
    return _section("diagnose", "Diagnosis", "".join(body),
                    f"Why each model lost accuracy against {_e(run.label.get(ref, ref))}: the mAP each error type "
                    "costs "
                    "(TIDE), the error of each output and layer, the quantized scales the outputs get, the ops left "
                    "out of INT8, and which single layer kept in higher precision wins most (validate --diagnose; "
                    "diagnostics.json).")


COST_MIN_MODELS = 3  # models with a timing from which the page draws accuracy vs cost (a sweep, a manifest run)


def _cost(run: _Run) -> str:
    """Accuracy vs cost over every model: mAP@0.5:0.95 against inference ms/image and size. Host timings: the
    whole section is one line, like the timing section (tools/check_demo_diff.py skips both)."""
    timing, sizes = run.data.get("timing") or {}, run.data.get("sizes") or {}
    rows = []
    for m in run.models:
        t = timing.get(m["name"])
        mp = _num(((m.get("metrics") or {}).get("bbox") or {}).get("mAP50_95"))
        n = _num((t or {}).get("images")) if isinstance(t, Mapping) else None
        ms = (_num(t.get("inference_s")) or 0.0) * 1000 / n if n else None
        rows.append((m, mp, ms, sizes.get(m["name"])))
    timed = [r for r in rows if r[1] is not None and r[2] is not None]
    if len(timed) < COST_MIN_MODELS:
        return ""
    ref = next((r for r in rows if r[0]["name"] == run.reference), None)
    png = plots.pareto([(run.label[m["name"]], run.color.get(m["name"], 0), ms, mp * 100, b)
                        for m, mp, ms, b in timed], ref[1] * 100 if ref and ref[1] is not None else None)
    body = []
    for m, mp, ms, b in sorted(rows, key=lambda r: (-(r[1] or 0), r[0]["name"])):
        d = None if ref is None or ref[1] is None or mp is None or m["name"] == run.reference else (mp - ref[1]) * 100
        body.append(f"<tr><td>{_e(run.label[m['name']])}</td>{_ncell(mp, _pct(mp))}"
                    + (_dcell(d) if d is not None else '<td class="num na">—</td>')
                    + _ncell(b, "n/a" if b is None else f"{b / 1e6:.2f}")
                    + _ncell(ms, "n/a" if ms is None else f"{ms:.1f}") + "</tr>")
    table = ('<table class="data sortable"><thead><tr><th>model</th><th>mAP@0.5:0.95</th><th>Δ pts</th>'
             '<th>size MB</th><th>inference ms/img</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>")
    key = run.legend([(m["name"], run.label[m["name"]], run.color.get(m["name"], 0)) for m, _, _, _ in timed])
    fig = f'<figure>{_img(png, "accuracy vs cost")}{key}</figure>' if png else ""
    return _section("cost", "Accuracy vs cost", fig + table,
                    "Every model's box mAP@0.5:0.95 against its inference time on this run's host (CPU, one image at a "
                    "time) and its file size: the models on the dashed front are the ones worth choosing from. "
                    "Cached models show the times of the run that made their predictions.")


def _timing(run: _Run) -> str:
    timing = run.data.get("timing") or {}
    if not timing:
        return ""
    rows, bars, extra = [], [], []
    for name, t in timing.items():
        if not isinstance(t, Mapping):
            extra.append(f"<li>{_e(name)}: {_e(t)}</li>")
            continue
        n = _num(t.get("images")) or 0
        ms = [(_num(t.get(k)) or 0.0) * 1000 / n if n else None
              for k in ("preprocess_s", "inference_s", "postprocess_s")]
        total = sum(ms) if all(v is not None for v in ms) else None
        wall = _num(t.get("loop_wall_s"))
        rows.append(f"<tr><td>{_e(run.label.get(name, name))}</td>{_ncell(t.get('images'))}"
                    + "".join(_ncell(v, "n/a" if v is None else f"{v:.1f}") for v in ms)
                    + _ncell(total, "n/a" if total is None else f"{total:.1f}")
                    + _ncell(wall, "n/a" if wall is None else f"{wall:.1f}")
                    + f"<td>{'yes' if t.get('cached') else 'no'}</td></tr>")
        if total is not None:
            bars.append((run.label.get(name, name), run.color.get(name, 0), *ms))
    if not rows and not extra:
        return ""
    body = ('<table class="data"><thead><tr><th>model</th><th>images</th><th>preprocess<br>ms/img</th>'
            '<th>inference<br>ms/img</th><th>postprocess<br>ms/img</th><th>total<br>ms/img</th>'
            '<th>loop wall<br>s</th><th>cached</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    png = plots.timing_bars(bars)
    if png:
        body += f'<figure>{_img(png, "timing per stage")}</figure>'
    if extra:
        body += "<ul>" + "".join(extra) + "</ul>"
    return _section("timing", "Timing per stage", body,
                    "Host timings of this run (preprocess includes image decoding; loop wall is the whole inference "
                    "loop, all models together). A cached model was not run again.")


SETTING_DEFAULTS = {  # what a setting left unset means, shown instead of an empty value
    "boxes": "auto (read from the outputs)", "limit": "none (every image)",
    "names": "auto (the model's own, else the dataset's order)", "input_range": "auto (the input's quantization, "
    "then the model's metadata, else 0,1)", "delegate": "none", "resample": "auto"}


def _kv(d: Mapping, skip: tuple = (), defaults: Mapping | None = None) -> str:
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if v is None or v == "":
            v = (defaults or {}).get(k, "none")
        if isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True, ensure_ascii=False)
        rows.append(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


def _provenance(run: _Run) -> str:
    """Per model a card (a table of seven columns did not fit the page: paths, hashes, contracts)."""
    s = run.summary
    parts = []
    cards = []
    for m in run.models:
        prec = m.get("precision") or {}
        tr = m.get("input_transform") or {}
        inp = m.get("input") or {}
        cls = m.get("classes") or {}
        dropped = cls.get("model_classes_dropped") or []
        missing = cls.get("dataset_categories_missing") or []
        rows = [("file", f"<code>{_e(m.get('path', ''))}</code>"),
                ("sha256", f"<code class='hash'>{_e(m.get('sha256', ''))}</code>"),
                ("role", _e(f"{m.get('role', '')} · {m.get('kind', '')}")),
                ("precision", _e(f"{m.get('format', '')} {prec.get('label', '')}")
                 + (f"<br><span class='muted'>{_e(prec.get('evidence', ''))}</span>" if prec.get("evidence") else "")),
                ("input", _e(f"{inp.get('shape', '')} {inp.get('dtype', '')} {inp.get('layout', '')}")
                 + (f"; range {_e(tr.get('range', ''))}<br><span class='muted'>{_e(tr.get('source', ''))}</span>"
                    if tr else "")),
                ("output contract", _e(m.get("contract", "")) + (f"<br><span class='muted'>boxes "
                                                                  f"{_e(m.get('box_units', ''))}</span>"
                                                                  if m.get("box_units") else "")),
                ("classes", _e(f"{cls.get('mapped', '')} mapped by {cls.get('by', '')}")
                 + (f"<br>dropped: {_e(', '.join(map(str, dropped)))}" if dropped else "")
                 + (f"<br>missing: {_e(', '.join(map(str, missing[:12])))}"
                    + (f" +{len(missing) - 12}" if len(missing) > 12 else "") if missing else "")
                 + (f"<br><span class='muted'>{_e(cls.get('source', ''))}</span>" if cls.get("source") else "")),
                ("detections", _e(m.get("num_predictions", "")))]
        if m.get("delegate"):
            rows.append(("delegate", _e(m.get("delegate"))))
        if m.get("notes"):
            rows.append(("notes", "<br>".join(_e(n) for n in m["notes"])))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        cards.append(f'<div class="pcard"><div class="ptitle"><b>{_e(m["name"])}</b> · {_e(run.label[m["name"]])}'
                     f'</div><table class="kv">{body}</table></div>')
    if cards:
        parts.append('<h3>Models</h3><div class="pcards">' + "".join(cards) + "</div>")
    ds = s.get("dataset") or {}
    if ds:
        parts.append("<h3>Dataset</h3>" + _kv(ds, skip=("categories",)))
        cats = ds.get("categories") or []
        if cats:
            parts.append(f'<p class="muted">{len(cats)} categories: '
                         + _e(", ".join(f"{c.get('id')} {c.get('name')}" for c in cats)) + "</p>")
    settings = s.get("settings") or {}
    if settings:
        parts.append("<h3>Settings</h3>" + _kv(settings, skip=("metric_definitions",), defaults=SETTING_DEFAULTS))
        defs = settings.get("metric_definitions") or {}
        if defs:
            parts.append("<h3>Metric definitions</h3><dl class='defs'>" + "".join(
                f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in defs.items()) + "</dl>")
    if s.get("versions"):
        parts.append("<h3>Versions</h3><p class='versions'>" + " · ".join(
            f"{_e(k)} <code>{_e(v)}</code>" for k, v in s["versions"].items()) + "</p>")
    return _section("provenance", "Provenance", "".join(parts))


# ------------------------------------------------------------------------------------------ page
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:#202124;background:#f4f5f7}
main{max-width:1200px;margin:0 auto;padding:12px 20px 40px}
nav{position:sticky;top:0;z-index:2;background:#202124;padding:6px 20px;font-size:13px}
nav a{color:#e8eaed;text-decoration:none;margin-right:14px}nav a:hover{text-decoration:underline}
header.top{display:flex;gap:18px;align-items:flex-start;background:#fff;border-radius:8px;padding:16px 18px;
margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.badge{font:700 26px/1 system-ui,sans-serif;padding:16px 18px;border-radius:8px;color:#fff;min-width:130px;
text-align:center;letter-spacing:.04em}
.badge.pass{background:#188038}.badge.fail{background:#c5221f}.badge.none{background:#5f6368;font-size:20px}
h1{font-size:20px;margin:0 0 2px}h2{font-size:17px;margin:0 0 8px}h3{font-size:14px;margin:14px 0 6px}
.sub{margin:0 0 8px;color:#5f6368}.counts{margin:6px 0 0}.fails{margin:4px 0 0;color:#a50e0e;font-weight:600}
.hl{margin:3px 0}.hl .who{font-weight:600;margin-right:8px}
.chip{display:inline-block;padding:1px 8px;border-radius:10px;margin-right:6px;font-size:13px;
font-variant-numeric:tabular-nums}.chip.plain{background:#e8eaed}
section{background:#fff;border-radius:8px;padding:14px 18px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.note{color:#5f6368;margin:0 0 8px;font-size:13px}.muted{color:#5f6368}.title{margin:0 0 8px;font-weight:600}
.error{color:#b3261e;font-weight:600}
.alert{background:#fce8e6;color:#8c1d18;border-left:4px solid #c5221f;border-radius:4px;padding:6px 10px;margin:8px 0 0}
.alert ul{margin:2px 0 0;padding-left:20px}.alert a{color:#8c1d18}
details.dmodel{border:1px solid #e3e3e3;border-radius:6px;padding:6px 10px;margin:8px 0}
details.dmodel summary{font-weight:600;cursor:pointer}li.warn{color:#a50e0e;font-weight:600}
table.data.diag th{overflow-wrap:normal}
table.diag td.bad{background:#fce8e6;color:#a50e0e;font-weight:600}
table.data{border-collapse:collapse;margin:6px 0 10px;font-size:13px;font-variant-numeric:tabular-nums}
table.data th,table.data td{border-bottom:1px solid #e3e3e3;padding:4px 9px;text-align:left;vertical-align:top}
table.data thead th{background:#f1f3f4;font-weight:600;border-bottom:2px solid #dadce0}
table.data td.num,table.data th.num{text-align:right;white-space:nowrap}
table.headline{font-size:14px}table.headline td,table.headline th{padding:6px 12px}
tr.delta td{border-top:2px solid #dadce0;font-weight:600}
.dn2{background:#f4c7c3;color:#8c1d18}.dn1{background:#fce8e6;color:#a50e0e}.d0{color:#5f6368}
.dp1{background:#e6f4ea;color:#137333}.dp2{background:#ceead6;color:#0d652d}.na{color:#9aa0a6}
.legend span{padding:1px 6px;border-radius:4px;font-size:12px}.legend{font-size:12px;color:#5f6368}
ul.notes{margin:4px 0 8px;padding-left:20px;color:#3c4043;font-size:13px}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e8eaed}
table.sortable th.asc::after{content:" \\25B2";font-size:10px}
table.sortable th.desc::after{content:" \\25BC";font-size:10px}
table.gate tr.bad td{background:#fce8e6}table.gate tr.bad td.status{color:#a50e0e;font-weight:700}
table.gate tr.ok td.status{color:#137333;font-weight:600}table.gate tr.skip td{color:#80868b}
td.reason{max-width:340px}
table.data th,table.data td,table.kv td,code,.hl,.mlegend li,.subset{overflow-wrap:anywhere}
.scroll{overflow-x:auto}
ul.mlegend{list-style:none;margin:4px 0 0;padding:0;font-size:12px;display:flex;flex-wrap:wrap;gap:2px 16px}
.subset{font-size:12px;color:#5f6368;margin:4px 0 0}
.pcards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px 16px}
.pcard{border:1px solid #e3e3e3;border-radius:6px;padding:8px 10px;min-width:0}.ptitle{margin-bottom:4px;font-size:13px}
figure{margin:8px 0 12px}figcaption{font-size:13px;color:#5f6368;margin-bottom:4px}
img.plot{max-width:100%;height:auto;display:block}
.gallery{display:flex;flex-wrap:wrap;gap:4px 28px}.gitem{margin:8px 0 10px}
.ghead{font-size:13px;font-weight:600;margin-bottom:4px}
.panels{display:flex;flex-wrap:wrap;gap:8px}.panel{flex:0 0 auto}
img.shot{display:block;border-radius:4px;max-width:100%;height:auto}.cap{font-size:12px;color:#3c4043;margin-top:2px}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px}
.legendrow{font-size:12px;margin-bottom:6px}.cls{margin-right:12px;white-space:nowrap}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:-1px}
.gnote{font-size:12px;color:#5f6368}
table.kv{border-collapse:collapse;font-size:12px}table.kv th{text-align:left;padding:2px 12px 2px 0;color:#5f6368;
font-weight:500;vertical-align:top;white-space:nowrap}table.kv td{padding:2px 0;word-break:break-all}
table.prov{font-size:12px}table.prov td:first-child{min-width:150px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code.hash{font-size:11px;color:#5f6368;word-break:break-all}
dl.defs{font-size:12px;margin:0}dl.defs dt{font-weight:600}dl.defs dd{margin:0 0 4px 16px;color:#3c4043}
.versions{font-size:12px}pre{font-size:12px;background:#f8f9fa;padding:8px;white-space:pre-wrap;
overflow-wrap:anywhere}
footer{color:#80868b;font-size:12px;text-align:center;margin-top:16px}
@media print{body{background:#fff;font-size:11px}nav{display:none}main{max-width:none;padding:0}
section,header.top{box-shadow:none;border:1px solid #dadce0;break-inside:avoid-page}
figure,tr,.gitem{break-inside:avoid}.scroll{overflow:visible}details{display:block}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""

JS = """
(function(){
function val(td){var v=td.getAttribute('data-v');return v===null?null:parseFloat(v);}
document.querySelectorAll('table.sortable').forEach(function(tab){
 tab.querySelectorAll('thead th').forEach(function(th){
  th.title=(th.title?th.title+' · ':'')+'click to sort';
  th.addEventListener('click',function(){
   var i=th.cellIndex,tb=tab.tBodies[0],rows=Array.prototype.slice.call(tb.rows);
   var dir=th.classList.contains('asc')?-1:1;
   tab.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
   th.classList.add(dir>0?'asc':'desc');
   rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);
    if(x!==null||y!==null){if(x===null)return 1;if(y===null)return -1;return (x-y)*dir;}
    return a.cells[i].textContent.localeCompare(b.cells[i].textContent)*dir;});
   rows.forEach(function(r){tb.appendChild(r);});
  });
 });
});
document.documentElement.setAttribute('data-report-ready','1');
})();
"""


SECTIONS = (
    ("table", "Table", "_headline"),
    ("gate", "Gate", "_gate"),
    ("diagnose", "Diagnosis", "_diagnose"),
    ("per-class", "Per class", "_per_class"),
    ("pr", "PR curves", "_pr"),
    ("sizes", "Sizes", "_sizes"),
    ("scores", "Scores", "_scores"),
    ("gallery", "Images", "_gallery"),
    ("history", "Trend", "_history"),
    ("cost", "Cost", "_cost"),
    ("timing", "Timing", "_timing"),
    ("provenance", "Provenance", "_provenance"),
)


def render_report(data: Mapping, failures: list | None = None, done=lambda: None) -> str:
    """The whole page as a string (see the module docstring for ``data``).

    With ``failures`` (a list), a section that raises is replaced by a note on the page and recorded there as
    a :class:`validator.errors.StageFailure`, so one broken plot costs that plot, not the report; without it
    the error propagates. ``done()`` is called after each section (progress)."""
    from validator.errors import StageFailure

    run = _Run(data)
    sections = []
    for sid, name, fn in SECTIONS:
        try:
            body = globals()[fn](run)
        except Exception as e:  # noqa: BLE001  reported through `failures`, the run exits 3
            if failures is None:
                raise
            failures.append(StageFailure.capture(f"report section '{sid}'", e))
            body = _section(sid, name, f'<p class="error">This section could not be drawn ({_e(failures[-1].error)}); '
                                       "validate exited 3 and saved the traceback.</p>")
        sections.append((sid, name, body))
        done()
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, body in sections if body)
    names = " vs ".join(run.label.get(n, n) for n, _, _ in run.plot_models()[:2]) or "no models"
    s = run.summary
    footer = (f"qharness {_e(s.get('qharness', ''))} · report.html is self-contained (no external resources) · "
              f"numbers from summary.json (dataset sha256 {_e((s.get('dataset') or {}).get('sha256', '')[:12])})")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>qharness · {_e(names)}</title><style>{CSS}</style></head>\n<body>"
            f"<nav>{nav}</nav><main>{_verdict(run)}"
            + "\n".join(body for _, _, body in sections if body)
            + f"<footer>{footer}</footer></main><script>{JS}</script></body></html>\n")
