"""Compare edgefirst-validator 6.0.9 itself with ``evaluate_edgefirst`` on our predictions, on one split.

Dev-only: edgefirst-validator is a peer, never a qharness dependency. Install it in its own venv (it needs
numpy 2, so ``tflite_runtime`` is replaced by a shim over ``ai_edge_litert`` that this script writes under
its work dir and puts on ``PYTHONPATH``):

    python3 -m venv /work/venvs/efv
    /work/venvs/efv/bin/pip install edgefirst-validator==6.0.9 ai-edge-litert onnxruntime

then run with the qharness venv:

    .venv/bin/python tools/compare_edgefirst.py --data DIR --det det.onnx --det det.int8.tflite \\
        --seg seg.onnx --seg seg.int8.tflite [--efv-python /work/venvs/efv/bin/python] [--json out.json] \\
        [--work DIR]

Why: ``evaluate_edgefirst`` promises numbers that line up with what edgefirst-validator prints (its "Mean
Recall", mAP@0.5, mAP@0.5-0.95, and the mask ones of seg models). For each model this script

1. writes a Darknet (YOLO txt) copy of the split, the only plain-file format edgefirst-validator reads
   (``images/val/`` symlinked, ``labels/val/*.txt`` normalised, crowd annotations dropped, ``labels.txt``
   with the names in category order). Detection labels are the COCO ``bbox``; segment labels one polygon
   per instance, a multi-part annotation merged into one polygon by zero-width bridges between nearest
   vertices (as Ultralytics' COCO converter does, so the box of the polygon is the box of all parts);
2. runs edgefirst-validator on it with its defaults (score 0.001, NMS IoU 0.70, 300 boxes, class-agnostic,
   letterbox, unsigned normalisation, ``--mask-resolution proto``) on the CPU, through its own
   ``build_parameters``/``build_evaluator``/``group_evaluation`` so that the full-precision metrics and
   its per-image detections (model-input pixels, proto-resolution masks) come back;
3. runs ``validate --model M --data D --no-cache --metric edgefirst`` (class-agnostic NMS, one label per box,
   boxes unclipped, masks on the prototype grid) and reads its summary.json;
4. for diagnosis, also scores (a) edgefirst-validator's own detections mapped back to the original image
   with ``evaluate_edgefirst`` at full resolution (boxes unclipped; masks nearest-sampled from its
   proto-resolution masks, so the mask rows differ by resolution): the box rows isolate the metric code
   from the pipeline, and (b) runs edgefirst-validator a second time fed exactly our input pixels
   (``--backend pillow`` with its resize patched to PIL bilinear, as ours): ours - (b) isolates everything
   but the pixels;
5. prints a markdown table (values and differences in points, i.e. x 100) and writes it as JSON if asked.

The remaining known differences are listed in ``validator/metrics/edgefirst.py``'s docstring.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

sys.path.insert(0, str(ROOT / "tools"))
from yolo_labels import write_labels  # noqa: E402

from validator.metrics.edgefirst import evaluate_edgefirst  # noqa: E402

EFV_PYTHON = Path("/work/venvs/efv/bin/python")
VALIDATE = ROOT / ".venv" / "bin" / "validate"
DECODE = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # edgefirst-validator 6.0.9 CLI defaults
# (row label, edgefirst part, edgefirst key, our iou type, our key)
ROWS = [
    ("box mAP50", "box", "map50", "bbox", "mAP50"),
    ("box mAP50-95", "box", "map", "bbox", "mAP50_95"),
    ("box R", "box", "mr", "bbox", "mean_recall"),
    ("box P", "box", "mp", "bbox", "mean_precision"),
    ("mask mAP50", "mask", "map50", "segm", "mAP50"),
    ("mask mAP50-95", "mask", "map", "segm", "mAP50_95"),
    ("mask R", "mask", "mr", "segm", "mean_recall"),
    ("mask P", "mask", "mp", "segm", "mean_precision"),
]

TFLITE_SHIM = '''"""tflite_runtime shim for edgefirst-validator under numpy 2 (from tools/compare_edgefirst.py)."""
from ai_edge_litert.interpreter import Delegate, Interpreter, OpResolverType, load_delegate  # noqa: F401
'''

# Runs inside the edgefirst-validator venv: argv[1] = JSON {"argv": [...], "out": path}.
PEER_DRIVER = r"""
import json, sys
import numpy as np
cfg = json.loads(sys.argv[1])
import edgefirst.validator.__main__ as cli
captured = {}
cli.validate = lambda a: captured.setdefault("args", a)
sys.argv = ["edgefirst-validator"] + cfg["argv"]
cli.main()
args = captured["args"]
from edgefirst.validator.validate import build_parameters, build_evaluator
from edgefirst.validator.evaluators import StageTracker, DetectionValidator
from edgefirst.validator.publishers.utils.logger import set_symbol_condition
if cfg.get("pil_bilinear"):  # diagnosis: feed it our pixels (PIL decode, PIL bilinear resize)
    from PIL import Image
    import edgefirst.validator.datasets.utils.image_transforms as transforms
    _resize = transforms.resize
    def resize(image, size=None, backend="hal"):
        if backend == "pillow" and size is not None and isinstance(image, np.ndarray):
            return np.asarray(Image.fromarray(image.astype(np.uint8)).resize(size, Image.BILINEAR))
        return _resize(image, size, backend)
    transforms.resize = resize
records = []
_evaluate = DetectionValidator.evaluate
def evaluate(self, instance, timer=None):
    gt, dt = instance["gt_instance"], instance["dt_instance"]
    rec = {"image": gt.image_path.split("/")[-1], "shapes": [list(map(float, np.ravel(gt.shapes[0]))),
           list(map(float, np.ravel(gt.shapes[1])))], "image_shape": [int(v) for v in gt.image_shape],
           "boxes": np.asarray(dt.boxes, np.float64).reshape(-1, 4).tolist(),
           "scores": np.asarray(dt.scores, np.float64).tolist(),
           "labels": [int(v) for v in np.asarray(dt.labels).ravel()]}
    mask = getattr(dt, "mask", None)
    if mask is not None and np.ndim(mask) == 3:
        m = np.asarray(mask) > 0
        rec["mask_hw"] = list(m.shape[1:])
        rec["masks"] = [np.packbits(x.ravel()).tobytes().hex() for x in m]
    records.append(rec)
    return _evaluate(self, instance, timer=timer)
DetectionValidator.evaluate = evaluate
set_symbol_condition(args.exclude_symbols)
tracker = StageTracker(studio_publisher=None, update_interval=100)
params = build_parameters(args)
evaluator = build_evaluator(args, parameters=params, client=None, stage_tracker=tracker)
metrics, _ = evaluator.group_evaluation()
tracker.shutdown()
def part(m):
    return {"map50": m.precision["map"]["0.50"], "map75": m.precision["map"]["0.75"],
            "map": m.precision["map"]["0.50:0.95"], "mp": m.precision["mean"], "mr": m.recall["mean"],
            "f1": m.f1["mean"]}
if hasattr(metrics, "segmentation_metrics"):
    out = {"box": part(metrics.detection_metrics), "mask": part(metrics.segmentation_metrics)}
else:
    out = {"box": part(metrics)}
out["settings"] = {"nms": params.model.nms, "backend": params.model.common.backend,
                   "agnostic": params.model.agnostic_nms, "iou": params.model.iou_threshold,
                   "score": params.model.score_threshold, "max_det": params.model.max_detections,
                   "preprocessing": params.model.common.preprocessing,
                   "mask_resolution": params.model.common.mask_resolution}
out["records"] = records
with open(cfg["out"], "w") as f:
    json.dump(out, f)
"""


# -------------------------------------------------------------------------------------- Darknet split
def write_split(data: Path, out: Path, task: str) -> Path:
    """COCO split -> Darknet layout under ``out`` (images/val, labels/val, labels.txt); returns ``out``."""
    doc = write_labels(data, out / "images" / "val", out / "labels" / "val", task, multipart="merge")
    (out / "labels.txt").write_text("".join(f"{c['name']}\n" for c in doc["categories"]))
    return out


# ----------------------------------------------------------------------------------- edgefirst-validator
def peer_run(efv_python: Path, model: Path, split: Path, task: str, work: Path, our_pixels: bool = False) -> dict:
    """edgefirst-validator's own metrics (fractions) and per-image detections for one model.

    ``our_pixels``: run it with ``--backend pillow`` and its resize patched to PIL bilinear, so that the
    model sees exactly our input pixels (same decoder, same resize, same padding on even margins).
    """
    shim = work / "shim" / "tflite_runtime"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text("")
    (shim / "interpreter.py").write_text(TFLITE_SHIM)
    out = work / f"edgefirst-{model.name}{'-our-pixels' if our_pixels else ''}.json"
    argv = [str(model), str(split), "--engine", "cpu", "--warmup", "1", "--suppress-plots",
            "--suppress-deployment-metrics",
            "--nms-score-threshold", str(DECODE["conf"]), "--nms-iou-threshold", str(DECODE["iou"]),
            "--max-detections", str(DECODE["max_det"])]  # fmt: skip
    if our_pixels:
        argv += ["--backend", "pillow"]
    env = {**os.environ, "PYTHONPATH": str(shim.parent), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [str(efv_python), "-c", PEER_DRIVER, json.dumps({"argv": argv, "out": str(out), "pil_bilinear": our_pixels})]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if r.returncode != 0 or not out.is_file():
        raise SystemExit(
            f"edgefirst-validator on {model} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-4000:]}"
        )
    return json.loads(out.read_text())


def peer_predictions(peer: dict, doc: dict, task: str) -> list[dict]:
    """edgefirst-validator's detections as COCO results in original-image pixels (boxes not clipped).

    Its boxes are xyxy in letterboxed input pixels; ``shapes`` = [[in_h, in_w], [s, s, pad_x, pad_y]].
    Masks (input / 4, letterbox space) are sampled at each original pixel's centre (nearest cell).
    """
    from pycocotools import mask as mask_utils

    by_name = {Path(im["file_name"]).name: im for im in doc["images"]}
    cats = [c["id"] for c in doc["categories"]]
    out = []
    for rec in peer["records"]:
        im = by_name[rec["image"]]
        (in_h, in_w), (s, _, pad_x, pad_y) = rec["shapes"]
        h, w = im["height"], im["width"]
        if (h, w) != tuple(rec["image_shape"]):
            raise SystemExit(f"{rec['image']}: edgefirst read {rec['image_shape']}, annotations say {(h, w)}")
        masks = rec.get("masks")
        if masks:
            mh, mw = rec["mask_hw"]
            cols = np.clip(np.floor(((np.arange(w) + 0.5) * s + pad_x) * mw / in_w).astype(int), 0, mw - 1)
            rows = np.clip(np.floor(((np.arange(h) + 0.5) * s + pad_y) * mh / in_h).astype(int), 0, mh - 1)
        for k, (box, score, label) in enumerate(zip(rec["boxes"], rec["scores"], rec["labels"], strict=True)):
            x0, y0 = (box[0] - pad_x) / s, (box[1] - pad_y) / s
            x1, y1 = (box[2] - pad_x) / s, (box[3] - pad_y) / s
            d = {
                "image_id": im["id"],
                "category_id": cats[label],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            }
            if masks and task == "segment":
                bits = np.unpackbits(np.frombuffer(bytes.fromhex(masks[k]), np.uint8))[: mh * mw]
                m = bits.reshape(mh, mw)[np.ix_(rows, cols)]
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                d["segmentation"] = rle
            out.append(d)
    return out


# ------------------------------------------------------------------------------------------- qharness
def ours_cli(model: Path, data: Path, out: Path, validate: Path) -> dict:
    """``validate --metric edgefirst`` (what a user runs): its metrics as summary.json holds them."""
    cmd = [str(validate), "--model", str(model), "--data", str(data), "--out", str(out), "--no-cache",
           "--metric", "edgefirst", "--workers", "1", "--threads", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    metrics = json.loads((out / "summary.json").read_text())["models"][0]["metrics"]
    keys = ("mAP50", "mAP50_95", "mean_recall", "mean_precision")
    return {t: {k: m[k] for k in keys} for t, m in metrics.items()}


def score(gt: dict, preds: list[dict], task: str) -> dict:
    iou_types = ["bbox", "segm"] if task == "segment" else ["bbox"]
    out = {}
    for t in iou_types:
        r = evaluate_edgefirst(gt, preds, t)
        out[t] = {
            "mAP50": r.stats["mAP50"],
            "mAP50_95": r.stats["mAP50_95"],
            "mean_recall": r.mean_recall,
            "mean_precision": r.mean_precision,
        }
    return out


# ---------------------------------------------------------------------------------------------- table
def _pts(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(100 * (a - b), 4)


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


# (key, title, key of the edgefirst-validator run it is compared with)
COLUMNS = [
    ("ours", "validate --metric edgefirst", "edgefirst"),
    ("peer_dets", "ours on its dets", "edgefirst"),
    ("ours", "validate --metric edgefirst", "edgefirst_our_pixels"),
]


def rows_for(name: str, task: str, peers: dict[str, dict], ours: dict[str, dict]) -> list[dict]:
    out = []
    for label, part, key, iou_type, our_key in ROWS:
        if part not in peers["edgefirst"]:
            continue
        row = {"model": name, "task": task, "metric": label}
        for p, res in peers.items():
            row[p] = res[part][key]
        for col, res in ours.items():
            row[col] = res.get(iou_type, {}).get(our_key)
        for col, _, ref in COLUMNS:
            row[f"{col}_minus_{ref}_pts"] = _delta(row[col], row[ref])
        out.append(row)
    return out


def markdown(rows: list[dict]) -> str:
    """Values in points (x 100); differences are ours - edgefirst-validator."""
    head = (
        "| model | metric | edgefirst-validator (E) | validate --metric edgefirst | - E | "
        "our metric on E's dets | - E | E on our pixels (E') | validate - E' |"
    )
    lines = [head, "|---|---|" + "---:|" * 7]
    for r in rows:
        d = [_signed(r[f"{c}_minus_{ref}_pts"]) for c, _, ref in COLUMNS]
        lines.append(
            f"| {r['model']} | {r['metric']} | {_pts(r['edgefirst'])} | {_pts(r['ours'])} | {d[0]} | "
            f"{_pts(r['peer_dets'])} | {d[1]} | {_pts(r['edgefirst_our_pixels'])} | {d[2]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="qharness split: annotations.json + images/")
    p.add_argument("--det", type=Path, action="append", default=[], help="detection model; repeatable")
    p.add_argument("--seg", type=Path, action="append", default=[], help="segmentation model; repeatable")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--work", type=Path, help="keep the Darknet splits and all runs here (default: temp dir)")
    p.add_argument(
        "--efv-python",
        type=Path,
        default=EFV_PYTHON,
        help=f"python of the edgefirst-validator venv (default {EFV_PYTHON})",
    )
    p.add_argument("--validate", type=Path, default=VALIDATE, help=f"qharness CLI (default {VALIDATE})")
    args = p.parse_args(argv)
    models = [("detect", m.resolve()) for m in args.det] + [("segment", m.resolve()) for m in args.seg]
    if not models:
        p.error("give --det and/or --seg")
    data = args.data.resolve()
    if not (data / "annotations.json").is_file():
        p.error(f"{data}: no annotations.json")
    doc = json.loads((data / "annotations.json").read_text())
    version = subprocess.run([str(args.efv_python), "-c", "import edgefirst.validator as v; print(v.__version__)"],
                             capture_output=True, text=True).stdout.strip() or "?"  # fmt: skip

    tmp = None if args.work else tempfile.mkdtemp(prefix="cmp-edgefirst-")
    work = (args.work or Path(tmp)).resolve()
    try:
        rows, per_model = [], []
        for task, model in models:
            w = work / task
            split = write_split(data, w / "darknet", task)
            peer = peer_run(args.efv_python, model, split, task, w)
            peer_ours = peer_run(args.efv_python, model, split, task, w, our_pixels=True)
            peers = {"edgefirst": peer, "edgefirst_our_pixels": peer_ours}
            ours = {
                "ours": ours_cli(model, data, w / f"ours-{model.name}", args.validate),
                "peer_dets": score(doc, peer_predictions(peer, doc, task), task),
            }  # fmt: skip
            model_rows = rows_for(model.name, task, peers, ours)
            rows += model_rows
            per_model.append({"model": str(model), "task": task, "edgefirst_settings": peer["settings"],
                              "rows": model_rows})  # fmt: skip
            print(f"{model.name}: edgefirst-validator settings {peer['settings']}", file=sys.stderr)
        table = markdown(rows)
        print(f"\nedgefirst-validator {version} vs qharness evaluate_edgefirst on {data} "
              "(points; differences ours - edgefirst-validator)\n")  # fmt: skip
        print(table)
        if args.json:
            out = {"data": str(data), "edgefirst_validator": version, "decode": DECODE,
                   "unit": "fractions; *_pts in points", "models": per_model}  # fmt: skip
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
