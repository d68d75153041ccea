"""``validate --diagnose``: for every compared model against its float reference, why it lost accuracy.

Joins the two halves no other tool joins: what the detection metric lost (error types, class collapse) and
where in the model it was lost (per-output error by role, the output-scale lint, layer-wise error and
layer sensitivity, the op audit, calibration images evaluated). Everything lands in ``diagnostics.json``;
:func:`text` is the short block printed under the table and the report's "Diagnosis" section reads the
same dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from validator.diagnose import error_types, graph, layers, outputs
from validator.overlap import calibration_overlap
from validator.progress import Progress

FORMAT = "qharness-diagnostics"
TIDE_IOUS = (0.5, 0.75)  # TIDE's own threshold, and one where INT8's box precision shows
COLLAPSE_RATIO = 0.5  # a class that kept less than half its float AP@0.5:0.95
COLLAPSE_MIN_REF = 0.05  # ... of a float AP of at least 5 points (below that, noise)
COLLAPSE_ZERO = 0.01  # AP below 1 point: collapsed to ~0


@dataclass(frozen=True)
class DiagnoseOptions:
    images: int = 8  # images for the per-output and layer-wise errors
    layers: int = 10  # worst layers tried one by one in higher precision
    split: int = 50  # images the sensitivity is scored on (the last ones of the evaluation set)
    precision: str = "float"  # what a sensitive layer is kept in: float | int16
    float_tflite: Path | None = None  # the float parent of TFLite INT8 models without a manifest
    sensitivity: bool = True


def _r(v, nd: int = 4):
    return None if v is None else round(float(v), nd)


# ------------------------------------------------------------------------------------------ pieces
def _tide(gt: dict, preds: list, iou_type: str, image_ids) -> dict:
    return {f"{pos:g}": error_types.error_breakdown(gt, preds, iou_type, pos_thresh=pos, image_ids=image_ids).to_dict()
            for pos in TIDE_IOUS}


def _tide_delta(ref: dict, got: dict) -> dict:
    out = {}
    for pos, r in ref.items():
        g = got[pos]
        out[pos] = {"ap": _r(g["ap"] - r["ap"]), "dap": {k: _r(g["dap"][k] - r["dap"][k]) for k in r["dap"]}}
    return out


def _collapse(ref_row: dict, row: dict, ref_compact: dict | None, compact: dict | None) -> list[dict]:
    out = []
    for t, m in row["metrics"].items():
        ref_pc = ref_row["metrics"].get(t, {}).get("per_class", {})
        for cid, pc in m.get("per_class", {}).items():
            r = ref_pc.get(cid, {}).get("AP50_95")
            v = pc.get("AP50_95")
            if r is None or v is None or r < COLLAPSE_MIN_REF:
                continue
            if v < COLLAPSE_RATIO * r or v < COLLAPSE_ZERO:
                hist = {}
                for who, c in (("reference", ref_compact), ("model", compact)):
                    if c is not None:
                        s = c["score"][c["category_id"] == int(cid)]
                        hist[who] = np.histogram(s, bins=20, range=(0, 1))[0].tolist()
                out.append({"iou_type": t, "category_id": int(cid), "name": pc.get("name"), "reference_ap": _r(r),
                            "ap": _r(v), "kind": "collapsed to ~0" if v < COLLAPSE_ZERO else "lost more than half",
                            "score_histogram": hist, "bins": 20})
    return out


def _parent(src, opts: DiagnoseOptions) -> Path | None:
    pm = (src.manifest or {}).get("parent_model") or {}
    if src.path.suffix.lower() == ".onnx":  # a QDQ variant: its float ONNX parent, from the manifest
        ok = pm.get("format") == "onnx" and pm.get("path") and Path(pm["path"]).is_file()
        return Path(pm["path"]) if ok else None
    if src.path.suffix.lower() != ".tflite":
        return None
    pm = (src.manifest or {}).get("parent_model") or {}
    if pm.get("format") == "tflite" and pm.get("path") and Path(pm["path"]).is_file():
        return Path(pm["path"])
    return opts.float_tflite


def _layer_samples(parent: Path, canvases):
    from validator.data.preprocess import InputMaker, choose_transform
    from validator.runners import open_runner
    from validator.runners.tflite import quiet_stderr

    with quiet_stderr():
        r = open_runner(parent)
    if r.input.integer:
        return None, r
    maker = InputMaker(r.input, choose_transform(r.input, r.metadata.get("normalization")))
    return [maker(c).copy() for c in canvases], r


# -------------------------------------------------------------------------------------------- main
def diagnose(sources, ds, settings, summary: dict, opts: DiagnoseOptions, *, quiet: bool = False) -> dict:
    from validator.predictions import read_predictions
    from validator.sources import reference

    ref = reference(sources)
    doc = {"format": FORMAT, "version": 1, "reference": ref.name if ref else None, "models": [],
           "settings": {"images": opts.images, "layers": opts.layers, "split": opts.split,
                        "precision": opts.precision, "tide_ious": list(TIDE_IOUS),
                        "collapse": {"ratio": COLLAPSE_RATIO, "min_reference_ap": COLLAPSE_MIN_REF}}}
    if ref is None:
        doc["skipped"] = "no float reference model (--float) to diagnose against"
        return doc
    others = [s for s in sources if s is not ref]
    rows = {r["name"]: r for r in summary["models"]}
    image_ids = [r.id for r in ds.images]
    steps = len(others) * (6 + (opts.layers + 1 if opts.sensitivity else 0)) + 1
    with Progress(steps, "validate: diagnose", "steps", quiet=quiet) as p:
        ref_preds = read_predictions(ref.predictions_path)
        types = ["bbox"] + (["segm"] if ref.has_masks else [])
        ref_tide = {t: _tide(ds.gt, ref_preds, t, image_ids) for t in types}
        del ref_preds
        ref_arrays = None
        if ref.kind == "model":
            canv = outputs.canvases(ds, ref.runner.input.hw, opts.images, settings.resize, settings.resample)
            ref_arrays = outputs.run_images(ref, canv)
        p.update()
        for s in others:
            entry = {"model": s.name, "path": str(s.path), "role": s.role, "precision": s.precision}
            preds = read_predictions(s.predictions_path)
            kinds = [t for t in types if t == "bbox" or s.has_masks]
            tide = {t: _tide(ds.gt, preds, t, image_ids) for t in kinds}
            del preds
            entry["error_types"] = {t: {"reference": ref_tide[t], "model": tide[t],
                                        "delta": _tide_delta(ref_tide[t], tide[t])} for t in kinds}
            p.update()
            entry["collapse"] = _collapse(rows[ref.name], rows[s.name], ref.compact, s.compact)
            p.update()
            if s.kind != "model":
                entry["skipped"] = "a results file: no model to look into"
                p.update(4 + (opts.layers + 1 if opts.sensitivity else 0))
                doc["models"].append(entry)
                continue
            why = outputs.comparable(ref, s) if ref_arrays is not None else "the reference is a results file"
            got = None
            if why is None:
                got = outputs.run_images(s, canv)
                entry["outputs"] = outputs.output_errors(ref_arrays, got)
            else:
                entry["outputs_skipped"] = why
            p.update()
            box_range = None
            if ref_arrays is not None and "boxes" in ref_arrays[0]:
                allb = np.concatenate([a["boxes"].ravel() for a in ref_arrays])
                box_range = (float(allb.min()), float(allb.max()))
            entry["scale_lint"] = graph.scale_lint(s, box_range) if s.role != "float" else None
            entry["op_audit"] = graph.op_audit(s.path)
            p.update()
            entry["calibration_overlap"] = calibration_overlap(s.manifest, ds)
            p.update()
            _layers(entry, s, ds, settings, opts, canv if ref_arrays is not None else None, p)
            doc["models"].append(entry)
    return doc


def _layers(entry: dict, s, ds, settings, opts: DiagnoseOptions, canv, p) -> None:
    parent = _parent(s, opts)
    sens_steps = opts.layers + 1 if opts.sensitivity else 0
    if parent is None or canv is None or s.role == "float":
        entry["layers_skipped"] = ("no float parent (a quantizer manifest's parent_model, or --float-tflite)"
                                   if parent is None else "nothing to compare")
        p.update(1 + sens_steps)
        return
    if parent.suffix.lower() == ".onnx":  # ONNX QDQ: onnxruntime's qdq_loss_debug on the same images
        _onnx_layers(entry, s, parent, opts, canv, p, sens_steps)
        return
    samples, _ = _layer_samples(parent, canv)
    if samples is None:
        entry["layers_skipped"] = f"{parent}: the float parent has an integer input"
        p.update(1 + sens_steps)
        return
    model = s.path.read_bytes()
    parent_bytes = parent.read_bytes()
    try:
        rows = layers.layer_errors(parent_bytes, model, samples)
    except Exception as e:  # noqa: BLE001  a model ai-edge-quantizer's validator cannot pair is said, not fatal
        entry["layers_skipped"] = f"layer-wise comparison failed: {' '.join(str(e).split())[:160]}"
        p.update(1 + sens_steps)
        return
    entry["layers"] = {"parent": str(parent), "images": len(samples), "tensors": len(rows),
                       "series": [[r["depth"], r["sqnr_db"]] for r in rows],
                       "worst": layers.worst(rows, opts.layers)}
    p.update()
    if not opts.sensitivity:
        return
    recipe = ((s.manifest or {}).get("recipe") or {}).get("rules")
    if not recipe:
        entry["sensitivity_skipped"] = "no recipe to rebuild the model with (a quantizer manifest's recipe)"
        p.update(sens_steps)
        return
    from validator.data.coco import subset
    from validator.diagnose.score import Scorer

    split = subset(ds, [r.id for r in ds.images[-opts.split:]])
    rng = (s.manifest.get("calibration") or {}).get("input_range")
    scorer = Scorer(split, settings)
    try:
        res = layers.layer_sensitivity(parent_bytes, model, recipe, entry["layers"]["worst"], scorer,
                                       precision=opts.precision, input_range=tuple(rng) if rng else None,
                                       progress=p.update)
    finally:
        scorer.close()
    entry["sensitivity"] = {**res, "images": len(split.images), "metric": "mAP50_95 (bbox), points",
                            "split": "the last images of the evaluation set"}


def _onnx_layers(entry: dict, s, parent: Path, opts: DiagnoseOptions, canv, p, sens_steps: int) -> None:
    from validator.data.preprocess import InputMaker, choose_transform
    from validator.runners import open_runner

    r = open_runner(parent)
    maker = InputMaker(r.input, choose_transform(r.input, r.metadata.get("normalization")))
    try:
        rows = layers.onnx_layer_errors(parent, s.path, [maker(c).copy() for c in canv])
    except Exception as e:  # noqa: BLE001  said, not fatal
        entry["layers_skipped"] = f"layer-wise comparison failed: {' '.join(str(e).split())[:160]}"
        p.update(1 + sens_steps)
        return
    entry["layers"] = {"parent": str(parent), "images": len(canv), "tensors": len(rows),
                       "series": [[x["depth"], x["sqnr_db"]] for x in rows], "worst": layers.worst(rows, opts.layers),
                       "by": "onnxruntime.quantization.qdq_loss_debug"}
    entry["sensitivity_skipped"] = "layer sensitivity rebuilds TFLite variants (ai-edge-quantizer recipes) only"
    p.update(1 + sens_steps)


# --------------------------------------------------------------------------------------------- text
def text(doc: dict) -> str:
    """The short block printed under the table."""
    lines = ["", "Diagnosis (--diagnose; diagnostics.json, report.html#diagnose):"]
    if doc.get("skipped"):
        return "\n".join([*lines, f"- {doc['skipped']}", ""])
    for m in doc["models"]:
        name = m["model"]
        for c in m.get("collapse", []):
            lines.append(f"- {name}: CLASS COLLAPSE {c['name']} ({c['iou_type']}): AP@0.5:0.95 "
                         f"{c['reference_ap'] * 100:.2f} -> {c['ap'] * 100:.2f} ({c['kind']})")
        et = m.get("error_types", {}).get("bbox")
        if et:
            for pos in ("0.5", "0.75"):
                d = et["delta"][pos]["dap"]
                g = et["model"][pos]["dap"]
                parts = ", ".join(f"{k} {g[k]:.2f} ({d[k]:+.2f})" for k in g)
                lines.append(f"- {name}: error types at IoU {pos} (dAP, INT8 - float): {parts}")
        for o in m.get("outputs", []):
            if o["role"] in ("boxes", "scores"):
                lines.append(f"- {name}: output {o['role']}: SQNR {o['sqnr_db']} dB, max error {o['max_abs_error']:g}"
                             f" {o['unit']}, bias {o['bias']:+.4g}")
        for f in (m.get("scale_lint") or {}).get("findings", []):
            lines.append(f"- {'WARNING ' if f['level'] == 'warn' else ''}{f['text']}")
        a = m.get("op_audit")
        if a:
            if a["fully_integer"]:
                lines.append(f"- {name}: all {a['ops']} ops integer (int8)")
            else:
                fl = ", ".join(f"{k} x{v}" for k, v in a["float_ops"].items()) or "none"
                lines.append(f"- {name}: {a['float']} float ops ({fl}), {a['int16']} int16, internal quantize/"
                             f"dequantize {a['internal_quantize']}/{a['internal_dequantize']} of {a['ops']} ops")
        ov = m.get("calibration_overlap")
        if ov and ov["evaluated"]:
            lines.append(f"- WARNING {name}: {ov['evaluated']} of its {ov['calibration_images']} calibration images "
                         f"are evaluated here (by {ov['by']}): its numbers are optimistic")
        lay = m.get("layers")
        if lay and lay["worst"]:
            w = lay["worst"][0]
            lines.append(f"- {name}: layer adding most error: {w['op']} #{w['depth']} {w['tensor'][:60]} "
                         f"(SQNR {w['sqnr_db']} dB, {w['drop_db']:+.2f} dB below its inputs)")
        sens = m.get("sensitivity")
        if sens and sens["rows"] and sens["rows"][0]["win"] is not None:
            b = sens["rows"][0]
            lines.append(f"- {name}: keeping {b['op']} #{b['depth']} in {b['precision']} wins {b['win']:+.2f} pts "
                         f"mAP@0.5:0.95 on {sens['images']} images (baseline {sens['baseline']:.2f})")
    return "\n".join(lines) + "\n"


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=float) + "\n"
