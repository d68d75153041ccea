"""The reference accuracy table in the seed's layout (percentages, two decimals) and per-class CSV.

Detection: Model | mAP@0.5 | mAP@0.5-0.95 | Mean Recall.
Segmentation: Model | Det mAP@0.5 | Det mAP@0.5-0.95 | Mask mAP@0.5 | Mask mAP@0.5-0.95.
One row per model, then one "Δ" row per INT8 model (INT8 - float, in points).
"""

from __future__ import annotations

import csv
import io

DET_COLS = (("mAP@0.5", "bbox", "mAP50"), ("mAP@0.5-0.95", "bbox", "mAP50_95"), ("Mean Recall", "bbox", "mean_recall"))
SEG_COLS = (("Det mAP@0.5", "bbox", "mAP50"), ("Det mAP@0.5-0.95", "bbox", "mAP50_95"),
            ("Mask mAP@0.5", "segm", "mAP50"), ("Mask mAP@0.5-0.95", "segm", "mAP50_95"))


WORST_CLASSES = 5


def model_label(m: dict) -> str:
    fmt = "ONNX" if m["path"].lower().endswith(".onnx") else "TFLite"
    prec = "float32" if m["role"] == "float" else "INT8"
    return f"{fmt} {prec} ({m['name']})"


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


def rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    cols = _columns(summary)
    header = ["Model"] + [c[0] for c in cols]
    body = []
    for m in summary["models"]:
        body.append([model_label(m)] + [_pct(m["metrics"].get(t, {}).get(k)) for _, t, k in cols])
    for d in summary.get("deltas", []):
        body.append([f"Δ {d['int8']} − {d['float']}"] + [_pts(d["metrics"].get(t, {}).get(k)) for _, t, k in cols])
    return header, body


def markdown(summary: dict, timing: dict | None = None) -> str:
    header, body = rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    for d in summary.get("deltas", []):
        lines.append("")
        ch = d.get("changed_images")
        if ch:
            lines.append(f"{d['int8']} vs {d['float']}: {ch['count']} of {ch['of']} images changed materially "
                         f"(a confident detection, score >= {ch['score_threshold']:g}, without a same-class "
                         f"partner at IoU >= {ch['iou_threshold']:g}).")
        for iou_type, label in (("bbox", "boxes"), ("segm", "masks")):
            pcs = [r for r in d["metrics"].get(iou_type, {}).get("per_class", []) if r.get("dAP50_95") is not None]
            if pcs:
                worst = ", ".join(f"{r['name']} {_pts(r['dAP50_95'])[:-4]}" for r in pcs[:WORST_CLASSES])
                lines.append(f"Worst classes, ΔAP@0.5-0.95 ({label}, pts): {worst}")
    if timing:
        lines.append("")
        lines.append("Timing, ms/image (preprocess / inference / postprocess), wall:")
        for name, t in timing.items():
            n = max(1, t.get("images", 0))
            cached = " (cached predictions)" if t.get("cached") else ""
            lines.append(f"- {name}: {1e3 * t['preprocess_s'] / n:.1f} / {1e3 * t['inference_s'] / n:.1f} / "
                         f"{1e3 * t['postprocess_s'] / n:.1f}, wall {t['wall_s']:.1f} s{cached}")
    return "\n".join(lines) + "\n"


def csv_table(summary: dict) -> str:
    header, body = rows(summary)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(body)
    return buf.getvalue()


def per_class_csv(summary: dict) -> str:
    """One row per (iou_type, category): AP per model in %, and ΔAP per INT8 model, worst first."""
    models = summary["models"]
    deltas = summary.get("deltas", [])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["iou_type", "category_id", "name", "n_gt"]
    for m in models:
        head += [f"{m['name']} AP50", f"{m['name']} AP50_95"]
    for d in deltas:
        head += [f"Δ {d['int8']} AP50", f"Δ {d['int8']} AP50_95"]
    w.writerow(head)
    for iou_type in ("bbox", "segm"):
        if not any(iou_type in m["metrics"] for m in models):
            continue
        if deltas:
            order = [r["category_id"] for r in deltas[0]["metrics"][iou_type]["per_class"]]
        else:
            order = sorted(int(c) for c in models[0]["metrics"][iou_type]["per_class"])
        for cid in order:
            pc0 = models[0]["metrics"][iou_type]["per_class"][str(cid)]
            row = [iou_type, cid, pc0.get("name"), pc0.get("n_gt")]
            for m in models:
                pc = m["metrics"].get(iou_type, {}).get("per_class", {}).get(str(cid), {})
                row += [_num(pc.get("AP50")), _num(pc.get("AP50_95"))]
            for d in deltas:
                dd = {r["category_id"]: r for r in d["metrics"][iou_type]["per_class"]}.get(cid, {})
                row += [_num(dd.get("dAP50"), 1), _num(dd.get("dAP50_95"), 1)]
            w.writerow(row)
    return buf.getvalue()


def _num(v, scale: float = 100.0) -> str:
    if v is None:
        return ""
    v = v * scale
    return f"{0.0 if abs(v) < 0.005 else v:.2f}"
