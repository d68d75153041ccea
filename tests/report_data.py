"""Report data for the report.html tests, built the way the integrator builds it for render_report.

- :func:`load_run` reads a real ``validate --out`` folder (summary.json, timing.json, table.md,
  predictions/*.json) and the dataset, and computes the PR curves with pycocotools' own COCOeval
  (``eval["precision"][t, :, k, 0, 2]``: area all, maxDets 100), the scores and the gallery.
- :func:`real_run` runs ``validate`` on the fixture models once per session (memoised).
- :func:`synthetic` makes a run of any size without models (80 classes, 5000 images, many variants)
  for the size and shape tests; :func:`sample_gate` and :func:`sample_history` stand in for the gate and
  history modules.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fixtures" / "models"
GALLERY_N = 8
_RUNS: dict[tuple, Path] = {}


# ------------------------------------------------------------------------------------------ curves
def coco_curves(gt: dict, dets: list[dict], iou_type: str) -> dict:
    """COCO's interpolated precision at recall 0:0.01:1 (area all, maxDets 100) by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(gt)
    for i, a in enumerate(gt["annotations"], 1):  # ids from 1: COCOeval treats id 0 as "no match"
        a["id"] = i
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(dets)) if dets else None
        if dt is None:
            return {}
        ev = COCOeval(coco, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, 2]  # T x R x K
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))

    def mean_valid(x: np.ndarray, axes: tuple) -> list[float]:
        ok = x > -1
        n = ok.sum(axis=axes)
        s = np.where(ok, x, 0).sum(axis=axes)
        return [round(float(v), 6) for v in np.where(n > 0, s / np.maximum(n, 1), -1.0)]

    return {"recall": [round(float(r), 2) for r in ev.params.recThrs],
            "precision": {"0.50": mean_valid(p[t50], (1,)), "0.50:0.95": mean_valid(p, (0, 2))},
            "per_class": {int(c): {"0.50": [round(float(v), 6) for v in p[t50, :, k]]}
                          for k, c in enumerate(ev.params.catIds)}}


# ------------------------------------------------------------------------------------------ real runs
def _validate(*args: str) -> int:
    from validator.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        return main(list(args))


def real_run(tmp_path_factory, kind: str, data_dir: Path, single: bool = False) -> Path:
    """``validate`` on the det or seg fixture pair (or the INT8 model alone), once per session."""
    key = (kind, str(data_dir), single)
    if key not in _RUNS:
        out = tmp_path_factory.mktemp(f"report-{kind}{'-single' if single else ''}") / "out"
        cache = tmp_path_factory.mktemp("report-cache")
        stem = f"shapes-{kind}"
        models = (["--model", str(MODELS / f"{stem}.int8.tflite")] if single else
                  ["--float", str(MODELS / f"{stem}.onnx"), "--int8", str(MODELS / f"{stem}.int8.tflite")])
        code = _validate(*models, "--data", str(data_dir), "--out", str(out), "--cache-dir", str(cache))
        assert code == 0, f"validate exited {code}"
        _RUNS[key] = out
    return _RUNS[key]


def diagnosed_run(tmp_path_factory, data_dir: Path) -> tuple[Path, Path]:
    """(output folder, variants folder) of ``validate --diagnose`` on the det fixture and two quantizer
    variants made here (split and monolithic, min-max, 8 calibration images of seed 11): the monolithic one
    is the known bad control (pixel boxes and [0,1] scores under one int8 scale). Once per session."""
    import subprocess
    import sys

    from validator.datasets.shapes import ShapesConfig, generate

    key = ("diagnosed", str(data_dir), False)
    if key not in _RUNS:
        root = tmp_path_factory.mktemp("diag-run")
        generate(root / "calib", ShapesConfig(images=10, seed=11))
        r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(MODELS / "shapes-det.onnx"),
                            "--calib", str(root / "calib"), "--samples", "8", "--strategy", "minmax",
                            "--outputs", "split,monolithic", "--out", str(root / "v"), "--quiet"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        from validator.cli import main

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(root / "v" / "variants.json"),
                         "--data", str(data_dir), "--out", str(root / "out"), "--no-cache", "--diagnose", "--quiet",
                         "--diagnose-images", "4", "--diagnose-layers", "3", "--diagnose-split", "12"])
        assert code == 0, f"validate exited {code}"
        (root / "stdout.txt").write_text(printed.getvalue())
        _RUNS[key] = (root / "out", root / "v")
    return _RUNS[key]


def load_run(out: Path, data_dir: Path, gallery_n: int = GALLERY_N, gate: dict | None = None,
             history: dict | None = None, gate_markdown: str | None = None) -> dict:
    """The ``data`` dict of :func:`validator.report.html.render_report` for a ``validate`` output folder."""
    out, data_dir = Path(out), Path(data_dir)
    summary = json.loads((out / "summary.json").read_text())
    gt = json.loads(Path(summary["dataset"]["annotations"]).read_text())
    images_dir = Path(summary["dataset"].get("images_dir") or data_dir / "images")
    preds = {m["name"]: json.loads((out / m["predictions"]).read_text()) for m in summary["models"]}
    curves = {name: {t: coco_curves(gt, dets if t == "bbox" else [d for d in dets if d.get("segmentation")], t)
                     for t in next(m for m in summary["models"] if m["name"] == name)["metrics"]}
              for name, dets in preds.items()}
    scores = {name: [d["score"] for d in dets] for name, dets in preds.items()}
    ids = []
    for d in summary.get("deltas", []):
        ids += [i for i in d.get("changed_images", {}).get("image_ids", []) if i not in ids]
    if not ids:  # single model: the images with the most confident detections
        counts: dict[int, int] = {}
        for dets in preds.values():
            for d in dets:
                if d["score"] >= 0.25:
                    counts[d["image_id"]] = counts.get(d["image_id"], 0) + 1
        ids = sorted(counts, key=lambda i: (-counts[i], i))
    images = {im["id"]: im for im in gt["images"]}
    gallery = []
    for iid in ids[:gallery_n]:
        im = images[iid]
        gallery.append({
            "image_id": iid, "file_name": im["file_name"], "path": str(images_dir / im["file_name"]),
            "width": im["width"], "height": im["height"],
            "gt": [{"bbox": a["bbox"], "category_id": a["category_id"], "segmentation": a.get("segmentation")}
                   for a in gt["annotations"] if a["image_id"] == iid],
            "models": {name: [{k: d.get(k) for k in ("bbox", "category_id", "score", "segmentation")}
                              for d in dets if d["image_id"] == iid and d["score"] >= 0.25]
                       for name, dets in preds.items()},
        })
    return {"summary": summary, "timing": json.loads((out / "timing.json").read_text()),
            "table_md": (out / "table.md").read_text(), "curves": curves, "scores": scores, "gallery": gallery,
            "gate": gate, "gate_markdown": gate_markdown, "history": history,
            "diagnostics": (json.loads((out / "diagnostics.json").read_text())
                            if (out / "diagnostics.json").exists() else None)}


# ------------------------------------------------------------------------------------------ gate, history
def sample_gate(summary: dict, passed: bool = False) -> tuple[dict, str]:
    """A verdict shaped like the gate module's, from the summary's own deltas."""
    results = []
    for d in summary.get("deltas", []):
        for t, m in d["metrics"].items():
            for metric, limit in (("mAP50_95", -3.0), ("mAP50", -3.0)):
                v = m.get(metric)
                ok = passed or v is None or v >= limit
                results.append({"check": "max_drop", "model": d["model"], "metric": metric, "iou_type": t,
                                "value": v, "limit": limit, "passed": ok, "skipped": False, "reason": "",
                                "ci": None if v is None else [round(v - 1.7, 2), round(v + 1.5, 2)],
                                "outside_noise": None if ok else (v + 1.5 < limit), "unit": "pts", "op": ">="})
    results.append({"check": "class_drop", "model": None, "metric": "AP50_95", "iou_type": "bbox", "value": None,
                    "limit": -10.0, "passed": True, "skipped": True, "reason": "no class with >= 500 instances",
                    "ci": None, "outside_noise": None, "unit": "pts"})
    ok = all(r["passed"] for r in results)
    md = "| check | value | limit | passed |\n|---|---|---|---|\n" + "".join(
        f"| {r['check']} {r['metric']} | {r['value']} | {r['limit']} | {r['passed']} |\n" for r in results)
    return {"passed": ok, "exit_code": 0 if ok else 1, "results": results}, md


def sample_history(n: int = 3) -> dict:
    """A trend table and plot like the history module's (three runs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = [(f"2025-01-0{i + 1} 02:00", 52.05 - 0.4 * i, 38.23 - 1.1 * i) for i in range(n)]
    fig = Figure(figsize=(7, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(range(n), [r[1] for r in runs], "o-", label="float mAP50-95")
    ax.plot(range(n), [r[2] for r in runs], "o-", label="INT8 mAP50-95")
    ax.set_xticks(range(n), [r[0] for r in runs])
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    table = "| run | time | float mAP50-95 | INT8 mAP50-95 | Δ | verdict |\n|---|---|---|---|---|---|\n" + "".join(
        f"| {i + 1} | {t} | {a:.2f}% | {b:.2f}% | {b - a:+.2f} pts | {'pass' if i < n - 1 else 'fail'} |\n"
        for i, (t, a, b) in enumerate(runs))
    return {"table_md": table, "plot_png": buf.getvalue()}


# ------------------------------------------------------------------------------------------ synthetic
def synthetic(tmp_dir: Path, n_images: int = 5000, n_classes: int = 80, n_compared: int = 1, seg: bool = False,
              gallery_n: int = 30, seed: int = 0, names: list[str] | None = None) -> dict:
    """A run shaped like a 5000-image COCO validation without any model: real-sized per-class tables,
    ~100 detections per image of scores, photo-like gallery pictures (noise: the worst case for JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tmp_dir = Path(tmp_dir)
    cats = [{"id": i + 1 + (i // 11), "name": f"class {i:02d}"} for i in range(n_classes)]
    iou_types = ["bbox", "segm"] if seg else ["bbox"]
    names = names or (["yolo-float"] + [f"yolo-int8-v{j}" for j in range(n_compared)])

    def metrics(drop: float) -> dict:
        out = {}
        for t in iou_types:
            pc = {str(c["id"]): {"name": c["name"], "n_gt": int(rng.integers(5, 5000)),
                                 "AP50": float(np.clip(rng.normal(0.6, 0.15) - drop, 0, 1)),
                                 "AP50_95": float(np.clip(rng.normal(0.4, 0.12) - drop, 0, 1))} for c in cats}
            out[t] = {"mAP50_95": float(np.mean([v["AP50_95"] for v in pc.values()])),
                      "mAP50": float(np.mean([v["AP50"] for v in pc.values()])), "mAP75": 0.4,
                      "AP_small": 0.2 - drop, "AP_medium": 0.45 - drop, "AP_large": 0.6 - drop, "AR100": 0.55 - drop,
                      "mean_recall": 0.5 - drop, "per_class": pc}
        return out

    models = []
    for j, n in enumerate(names):
        models.append({"name": n, "label": ("ONNX float32" if j == 0 else "TFLite INT8") + f" ({n})",
                       "role": "float" if j == 0 else "int8", "path": f"models/{n}", "sha256": f"{j:064x}",
                       "format": "onnx" if j == 0 else "tflite",
                       "precision": {"label": "float32" if j == 0 else "INT8"},
                       "metrics": metrics(0.0 if j == 0 else 0.02 * j), "num_predictions": n_images * 100})
    deltas = []
    for m in models[1:]:
        dm = {}
        for t in iou_types:
            ref, cur = models[0]["metrics"][t], m["metrics"][t]
            rows = [{"category_id": int(c), "name": v["name"], "n_gt": v["n_gt"],
                     "dAP50": round((cur["per_class"][c]["AP50"] - v["AP50"]) * 100, 4),
                     "dAP50_95": round((cur["per_class"][c]["AP50_95"] - v["AP50_95"]) * 100, 4)}
                    for c, v in ref["per_class"].items()]
            rows.sort(key=lambda r: (r["dAP50_95"], r["category_id"]))
            dm[t] = {k: round((cur[k] - ref[k]) * 100, 4) for k in ref if k != "per_class"}
            dm[t]["per_class"] = rows
        deltas.append({"reference": names[0], "model": m["name"], "metrics": dm,
                       "changed_images": {"count": 1234, "of": n_images, "score_threshold": 0.25,
                                          "iou_threshold": 0.5, "image_ids": list(range(1, 101))}})
    summary = {"qharness": "0.1.0", "metric": "coco", "models": models, "deltas": deltas,
               "dataset": {"annotations": "coco/annotations.json", "images": n_images,
                           "annotations_count": n_images * 7, "categories": cats, "sha256": "ab" * 32},
               "settings": {"conf": 0.001, "iou": 0.7, "metric_definitions": {"mAP50_95": "COCO AP"}},
               "versions": {"qharness": "0.1.0"}}

    def curve(level: float) -> list[float]:
        r = np.linspace(0, 1, 101)
        return [round(float(v), 6) for v in np.where(r < level + 0.3, np.clip(1 - r ** 3 * level, 0, 1), -1)]

    curves = {m["name"]: {t: {"recall": [round(float(v), 2) for v in np.linspace(0, 1, 101)],
                              "precision": {"0.50": curve(0.7 - 0.05 * j), "0.50:0.95": curve(0.5 - 0.05 * j)},
                              "per_class": {c["id"]: {"0.50": curve(0.6 - 0.05 * j)} for c in cats}}
                          for t in iou_types} for j, m in enumerate(models)}
    scores = {m["name"]: np.round(rng.beta(0.4, 3, n_images * 100), 5) for m in models}
    gallery = []
    for i in range(gallery_n):
        path = tmp_dir / f"img{i:03d}.jpg"
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        gt = [{"bbox": [40.0 * k, 30.0 * k, 120.0, 90.0], "category_id": cats[k % n_classes]["id"],
               "segmentation": [[40.0 * k, 30.0 * k, 40.0 * k + 120, 30.0 * k, 40.0 * k + 60, 30.0 * k + 90]]}
              for k in range(6)]
        dets = {}
        for j, m in enumerate(models):
            dets[m["name"]] = [{"bbox": [40.0 * k + 3 * j, 30.0 * k + 2, 118.0, 92.0],
                                "category_id": cats[k % n_classes]["id"],
                                "score": round(0.9 - 0.1 * k - 0.05 * j, 3),
                                "segmentation": (_rle_rect(480, 640, 40 * k + 3 * j, 30 * k + 2, 118, 92)
                                                 if seg else None)}
                               for k in range(6)]
        gallery.append({"image_id": i + 1, "file_name": path.name, "path": str(path), "width": 640, "height": 480,
                        "gt": gt, "models": dets})
    timing = {m["name"]: {"cached": False, "images": n_images, "preprocess_s": 20.0, "inference_s": 150.0 + 10 * j,
                          "postprocess_s": 30.0, "loop_wall_s": 400.0} for j, m in enumerate(models)}
    # table_md None: the page builds the table from the summary
    return {"summary": summary, "timing": timing, "table_md": None, "curves": curves, "scores": scores,
            "gallery": gallery, "gate": None, "gate_markdown": None, "history": None}


def _rle_rect(h: int, w: int, x: int, y: int, bw: int, bh: int) -> dict:
    from pycocotools import mask as mask_utils

    m = np.zeros((h, w), np.uint8, order="F")
    m[max(0, y):min(h, y + bh), max(0, x):min(w, x + bw)] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
