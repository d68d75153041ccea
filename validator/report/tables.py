"""The reference accuracy table in the seed's layout (percentages, two decimals) and the CSV files.

Detection: Model | mAP@0.5 | mAP@0.5-0.95 | Mean Recall.
Segmentation (any model with masks): Model | Det mAP@0.5 | Det mAP@0.5-0.95 | Mask mAP@0.5 | Mask mAP@0.5-0.95;
a detection-only model beside it shows n/a under the mask columns.
One row per model, then one "Δ" row per compared model (model - reference, in points). Row labels come
from what each model is (its format and precision as the tensors show), never from the flag that named it.
The markdown starts with a title naming the metric; the CSV files hold numbers only, units in the header.
"""

from __future__ import annotations

import csv
import io

DET_COLS = (("mAP@0.5", "bbox", "mAP50"), ("mAP@0.5-0.95", "bbox", "mAP50_95"), ("Mean Recall", "bbox", "mean_recall"))
SEG_COLS = (("Det mAP@0.5", "bbox", "mAP50"), ("Det mAP@0.5-0.95", "bbox", "mAP50_95"),
            ("Mask mAP@0.5", "segm", "mAP50"), ("Mask mAP@0.5-0.95", "segm", "mAP50_95"))
WORST_CLASSES = 5
METRIC_TITLES = {
    "coco": "COCO (pycocotools-exact: IoU 0.50:0.95, 101-point AP, maxDets 100, crowds ignored)",
    "compat": "compat (Ultralytics 8.4 val-style reading, NOT COCO: crowds dropped, multi-label NMS, "
              "no 100-detection cap)",
    "edgefirst": "edgefirst (EdgeFirst validator 6.0.9-style reading, NOT COCO)",
}


def model_label(m: dict) -> str:
    return m.get("label") or m["name"]


def _columns(summary: dict):
    seg = any("segm" in m["metrics"] for m in summary["models"])
    return SEG_COLS if seg else DET_COLS


def _pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}%"


def _pts(v) -> str:
    if v is None:
        return "n/a"
    v = 0.0 if abs(v) < 0.005 else v  # no "-0.00"
    return f"{v:+.2f} pts"


def _delta_label(d: dict) -> str:
    return f"Δ {d['model']} − {d['reference']}"


PAIRED_GAP = 0.01  # a model row's own-optimum Mean Recall this far from its paired reading says so in the cell


def _cell(m: dict, t: str, k: str) -> str:
    """A model row's value; its Mean Recall is read at its own F1-optimal confidence, but the Δ row pairs it
    at the reference's: where the two differ by a point or more the cell carries the paired reading too,
    so the row and its Δ can be read together."""
    v = m["metrics"].get(t, {}).get(k)
    paired = (m.get("at_reference_confidence") or {}).get(t, {})
    if k != "mean_recall" or v is None or paired.get("mean_recall") is None:
        return _pct(v)
    if abs(v - paired["mean_recall"]) < PAIRED_GAP:
        return _pct(v)
    own = m["metrics"][t].get("f1_conf")
    own_s = f" at own conf {own:.3f}" if own is not None else ""
    return f"{_pct(v)}{own_s} ({_pct(paired['mean_recall'])} at the reference's {paired['conf']:.3f})"


def rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    cols = _columns(summary)
    header = ["Model"] + [c[0] for c in cols]
    body = []
    for m in summary["models"]:
        body.append([model_label(m)] + [_cell(m, t, k) for _, t, k in cols])
    for d in summary.get("deltas", []):
        body.append([_delta_label(d)] + [_pts(d["metrics"].get(t, {}).get(k)) for _, t, k in cols])
    return header, body


def title(summary: dict) -> str:
    metric = summary.get("metric", "coco")
    ds = summary["dataset"]
    return (f"qharness {summary.get('qharness', '')} · metric: {METRIC_TITLES.get(metric, metric)} · "
            f"{ds['images']} images, {ds['annotations_count']} annotations")


def _notes(summary: dict) -> list[str]:
    lines = []
    has_recall = any(k == "mean_recall" for _, _, k in _columns(summary))
    for d in summary.get("deltas", []):
        heads = d.get("heads_differ")
        if heads:
            lines.append(f"Heads differ, {d['model']} vs {d['reference']}: " + "; ".join(heads["differences"])
                         + f". Its Δ mixes quantization with that difference; {heads['advice']}.")
        ch = d.get("changed_images")
        if ch:
            lines.append(f"{d['model']} vs {d['reference']}: {ch['count']} of {ch['of']} images changed materially "
                         f"(a confident detection, score >= {ch['score_threshold']:g}, without a same-class "
                         f"partner at IoU >= {ch['iou_threshold']:g}).")
        box = d["metrics"].get("bbox", {})
        if has_recall and box.get("mean_recall_paired_conf") is not None and box.get("mean_recall") is not None:
            own = box.get("mean_recall_own_conf")
            lines.append(f"Δ Mean Recall is paired: {d['model']} at {d['reference']}'s F1-optimal confidence "
                         f"{box['mean_recall_paired_conf']:.3f} ({_pts(box['mean_recall'])}; each at its own "
                         f"optimum: {_pts(own)}).")
        for iou_type, label in (("bbox", "boxes"), ("segm", "masks")):
            pcs = [r for r in d["metrics"].get(iou_type, {}).get("per_class", []) if r.get("dAP50_95") is not None]
            if pcs:
                worst = ", ".join(f"{r['name']} {_pts(r['dAP50_95'])[:-4]}" for r in pcs[:WORST_CLASSES])
                lines.append(f"Worst classes, ΔAP@0.5-0.95 ({label}, pts): {worst}")
    for m in summary["models"]:
        c = m.get("classes") or {}
        if c.get("model_classes_dropped"):
            lines.append(f"{m['name']}: {len(c['model_classes_dropped'])} model classes are not dataset categories; "
                         f"their {c.get('detections_dropped', 0)} detections were dropped.")
        if c.get("dataset_categories_missing"):
            names = ", ".join(x["name"] for x in c["dataset_categories_missing"][:8])
            lines.append(f"{m['name']}: {len(c['dataset_categories_missing'])} dataset categories the model does "
                         f"not have (AP 0 where they have ground truth): {names}")
        for n in m.get("notes", []):
            lines.append(f"{m['name']}: {n}")
    gate = summary.get("gate")
    if gate:
        lines.append(gate["headline"])
        for r in gate.get("results", []):
            if r.get("status") == "failed":
                lines.append(f"- FAILED {r['id']} {r['name']} ({r['model']}): {r.get('message', '')}")
    sm = summary["dataset"].get("size_mismatches") or {}
    if sm.get("size_mismatch"):
        lines.append(f"{sm['size_mismatch']} images have a decoded size other than the JSON's width/height; "
                     "their detections were rescaled to the JSON's frame (see summary.json).")
    return lines


def markdown(summary: dict, timing: dict | None = None) -> str:
    header, body = rows(summary)
    lines = [f"**{title(summary)}**", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    notes = _notes(summary)
    if notes:
        lines.append("")
        lines += notes
    if timing:
        lines.append("")
        lines.append("Timing, ms/image (preprocess incl. image decode / inference / postprocess); loop wall = the "
                     "whole inference loop, all models together:")
        for name, t in timing.items():
            n = max(1, t.get("images", 0))
            cached = " (cached predictions, times of the run that made them)" if t.get("cached") else ""
            wall = t.get("loop_wall_s", t.get("wall_s"))
            wall_s = f", loop wall {wall:.1f} s" if wall is not None else ""
            lines.append(f"- {name}: {1e3 * t.get('preprocess_s', 0) / n:.1f} / {1e3 * t.get('inference_s', 0) / n:.1f}"
                         f" / {1e3 * t.get('postprocess_s', 0) / n:.1f}{wall_s}{cached}")
    return "\n".join(lines) + "\n"


def _num(v, scale: float = 100.0) -> str:
    if v is None:
        return ""
    v = v * scale
    return f"{0.0 if abs(v) < 0.005 else v:.2f}"


def csv_table(summary: dict) -> str:
    """The table as numbers: model rows in %, Δ rows in percentage points; empty where n/a."""
    cols = _columns(summary)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "name", "label", "metric"] + [f"{c[0]} (% ; Δ rows: pts)" for c in cols])
    metric = summary.get("metric", "coco")
    for m in summary["models"]:
        w.writerow(["model", m["name"], model_label(m), metric]
                   + [_num(m["metrics"].get(t, {}).get(k)) for _, t, k in cols])
    for d in summary.get("deltas", []):
        w.writerow(["delta", d["model"], _delta_label(d), metric]
                   + [_num(d["metrics"].get(t, {}).get(k), 1.0) for _, t, k in cols])
    return buf.getvalue()


def per_class_csv(summary: dict) -> str:
    """One row per (iou_type, category): AP per model in %, ΔAP per compared model in pts, worst first."""
    models = summary["models"]
    deltas = summary.get("deltas", [])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["iou_type", "category_id", "name", "n_gt"]
    for m in models:
        head += [f"{m['name']} AP50 (%)", f"{m['name']} AP50_95 (%)"]
    for d in deltas:
        head += [f"Δ {d['model']} AP50 (pts)", f"Δ {d['model']} AP50_95 (pts)"]
    w.writerow(head)
    for iou_type in ("bbox", "segm"):
        have = [m for m in models if iou_type in m["metrics"]]
        if not have:
            continue
        first = next((d for d in deltas if iou_type in d["metrics"]), None)
        if first is not None:
            order = [r["category_id"] for r in first["metrics"][iou_type]["per_class"]]
        else:
            order = sorted(int(c) for c in have[0]["metrics"][iou_type]["per_class"])
        for cid in order:
            pc0 = have[0]["metrics"][iou_type]["per_class"][str(cid)]
            row = [iou_type, cid, pc0.get("name"), pc0.get("n_gt")]
            for m in models:
                pc = m["metrics"].get(iou_type, {}).get("per_class", {}).get(str(cid), {})
                row += [_num(pc.get("AP50")), _num(pc.get("AP50_95"))]
            for d in deltas:
                dd = {r["category_id"]: r for r in d["metrics"].get(iou_type, {}).get("per_class", [])}.get(cid, {})
                row += [_num(dd.get("dAP50"), 1), _num(dd.get("dAP50_95"), 1)]
            w.writerow(row)
    return buf.getvalue()
