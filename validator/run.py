"""Orchestration of `validate`: dataset -> runners -> decoders -> cache -> metrics -> compare -> report.

Every image is decoded once and letterboxed once per distinct model input geometry; all models see
the same canvases. Predictions are written in COCO results format and the metrics are computed from
exactly what was written (rounded values included), so an independent pycocotools run on
`predictions/<model>.json` reproduces our numbers exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from validator import __version__
from validator.data.coco import Dataset, dataset_hashes, load_dataset
from validator.data.preprocess import ResizeMode, letterbox, load_image, to_input
from validator.decode import decode
from validator.decode.contract import BoxUnits, Contract, ContractError, identify, resolve_box_units
from validator.decode.geometry import boxes_to_original
from validator.decode.masks import masks_to_rles
from validator.errors import InputError
from validator.hashing import sha256_file
from validator.runners import Runner, open_runner


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    role: str  # "float" | "int8" | "auto" (--model: INT8 when the model holds int8/uint8 tensors)


@dataclass(frozen=True)
class Settings:
    """Everything that changes predictions (part of the cache key) or metrics."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    agnostic: bool = False
    resize: str = "letterbox"
    boxes: str | None = None  # None = decide from the outputs
    task: str = "auto"
    metric: str = "coco"
    backend: str = "faster-coco-eval"
    limit: int | None = None
    names: str | None = None
    multi_label: bool = False  # one box may carry several classes (Ultralytics val does; set by compat)
    clip_boxes: bool = True  # clip boxes to the image (COCO results); compat keeps them as drawn, like Ultralytics

    def prediction_key(self) -> dict:
        d = asdict(self)
        for k in ("metric", "backend"):
            d.pop(k)
        return d


@dataclass
class ModelRun:
    """A model opened for this run, with its identified contract and class -> category mapping."""

    spec: ModelSpec
    name: str
    runner: Runner
    sha256: str
    contract: Contract
    category_of: list[int]  # model class index -> dataset category id
    box_units: str | None = None
    predictions: list[dict] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    nonfinite: dict = field(default_factory=dict)  # output name -> number of images with NaN/Inf
    cached: bool = False
    cache_path: Path | None = None


def _progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


# ------------------------------------------------------------------------------------------- classes
def read_names(path: Path) -> list[str]:
    """`--names FILE`: one class name per line (model class order), or a JSON list / {index: name}."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read names file ({e.strerror or e})") from None
    s = text.strip()
    if s.startswith(("[", "{")):
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: invalid JSON names file ({e.msg})") from None
        if isinstance(obj, dict):
            return [str(obj[k]) for k in sorted(obj, key=lambda k: int(k))]
        return [str(v) for v in obj]
    return [line.strip() for line in s.splitlines() if line.strip()]


def category_mapping(ds: Dataset, model_names: list[str] | None, names_file: str | None,
                     model_label: str) -> list[int]:
    """Model class index -> dataset category id.

    `--names` wins, then the model's own class names (metadata) when every one of them is a dataset
    category name; otherwise the order of the JSON's categories (how COCO-trained YOLO models are
    indexed: class i is the i-th category, whatever its id).
    """
    by_name = {c["name"]: c["id"] for c in ds.categories}
    if names_file:
        names = read_names(Path(names_file))
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InputError(f"{names_file}: class names not in the dataset's categories: {', '.join(unknown[:5])}")
        return [by_name[n] for n in names]
    if model_names and all(n in by_name for n in model_names):
        return [by_name[n] for n in model_names]
    if model_names and len(model_names) != len(ds.categories):
        raise InputError(f"{model_label}: model has {len(model_names)} classes but the dataset "
                         f"{ds.annotations_path} has {len(ds.categories)} categories")
    return ds.category_ids


# ------------------------------------------------------------------------------------------- models
def open_models(specs: list[ModelSpec], ds: Dataset, settings: Settings, threads: int | None) -> list[ModelRun]:
    runs: list[ModelRun] = []
    used: set[str] = set()
    for spec in specs:
        runner = open_runner(spec.path, threads)
        name = spec.path.name
        for suffix in (".onnx", ".tflite"):
            name = name.removesuffix(suffix)
        base, i = name, 2
        while name in used:
            name, i = f"{base}-{i}", i + 1
        used.add(name)
        md = runner.metadata or {}
        n_model = len(md["names"]) if md.get("names") else None
        mapping = category_mapping(ds, md.get("names"), settings.names, str(spec.path))
        try:
            contract = identify(runner.outputs, runner.input.hw, num_classes=len(mapping), boxes=settings.boxes,
                                model_name=str(spec.path))
        except ContractError as e:
            raise InputError(str(e)) from None
        if n_model is not None and n_model != contract.num_classes:
            raise InputError(f"{spec.path}: metadata names {n_model} classes but the outputs hold "
                             f"{contract.num_classes}")
        if settings.task == "segment" and not contract.num_masks:
            raise InputError(f"{spec.path}: --task segment but the model has no mask outputs ({contract.describe()})")
        if spec.role == "auto":
            spec = replace(spec, role="int8" if runner.quantized else "float")
        runs.append(ModelRun(spec, name, runner, sha256_file(spec.path), contract, mapping))
    return runs


# ------------------------------------------------------------------------------------------- images
def _prepared(ds: Dataset, geometries: list[tuple[int, int]], mode: ResizeMode, workers: int) -> Iterator:
    """Yield (record, orig_hw, {input_hw: (canvas, letterbox)}, seconds) in dataset order.

    With workers > 1 decoding runs ahead in a thread pool (PIL and numpy release the GIL) while the
    models run; at most 2 * workers images are held.
    """

    def prep(rec):
        t0 = time.perf_counter()
        img = load_image(rec.path)
        canv = {hw: letterbox(img, hw, mode) for hw in geometries}
        return rec, img.shape[:2], canv, time.perf_counter() - t0

    if workers <= 1:
        for rec in ds.images:
            yield prep(rec)
        return
    with ThreadPoolExecutor(max_workers=workers) as ex:
        pending = []
        it = iter(ds.images)
        for rec in it:
            pending.append(ex.submit(prep, rec))
            if len(pending) >= 2 * workers:
                break
        while pending:
            fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(prep, nxt))
            yield fut.result()


def _result_dicts(run: ModelRun, image_id: int, boxes: np.ndarray, scores, classes, rles) -> list[dict]:
    out = []
    cats = run.category_of
    if len(classes) and (int(np.min(classes)) < 0 or int(np.max(classes)) >= len(cats)):
        bad = int(np.min(classes)) if int(np.min(classes)) < 0 else int(np.max(classes))
        raise InputError(f"{run.spec.path}: model predicted class index {bad} but only {len(cats)} classes map to "
                         "dataset categories; give the model's class names with --names")
    for k in range(len(scores)):
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        d = {"image_id": image_id, "category_id": int(cats[int(classes[k])]),
             "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
             "score": round(float(scores[k]), 5)}
        if rles is not None:
            d["segmentation"] = rles[k]
        out.append(d)
    return out


def infer(runs: list[ModelRun], ds: Dataset, settings: Settings, workers: int) -> None:
    """Run every model that has no cached predictions over every image, collecting predictions."""
    todo = [r for r in runs if not r.cached]
    if not todo:
        return
    mode = ResizeMode(settings.resize)
    geometries = sorted({r.runner.input.hw for r in todo})
    for r in todo:
        r.timing = {"preprocess_s": 0.0, "inference_s": 0.0, "postprocess_s": 0.0, "images": 0}
    it = _prepared(ds, geometries, mode, workers)
    if _progress_enabled():
        from tqdm import tqdm

        it = tqdm(it, total=len(ds.images), desc="validate", unit="img")
    wall0 = time.perf_counter()
    for rec, orig_hw, canvases, decode_s in it:
        inputs: dict = {}
        for r in todo:
            spec = r.runner.input
            t0 = time.perf_counter()
            canvas, lb = canvases[spec.hw]
            key = (spec.hw, spec.layout, spec.dtype, spec.scale, spec.zero_point)
            if key not in inputs:
                inputs[key] = to_input(canvas, spec)
            x = inputs[key]
            t1 = time.perf_counter()
            outs = r.runner.run(x)
            t2 = time.perf_counter()
            for name, arr in outs.items():
                if not np.isfinite(arr).all():
                    r.nonfinite[name] = r.nonfinite.get(name, 0) + 1
                    outs[name] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
            if r.box_units in (None, BoxUnits.AUTO.value):  # END2END may need an image with detections
                r.box_units = BoxUnits(resolve_box_units(r.contract, outs, spec.hw)).value
            det = decode(r.contract, outs, spec.hw, conf=settings.conf, iou=settings.iou,
                         max_det=settings.max_det, agnostic=settings.agnostic, box_units=r.box_units,
                         multi_label=settings.multi_label)
            boxes = boxes_to_original(det.boxes, lb, orig_hw, clip=settings.clip_boxes)
            rles = None
            if det.coefs is not None and det.protos is not None and settings.task != "detect":
                rles = masks_to_rles(det.protos, det.coefs, det.boxes, lb, orig_hw)
            r.predictions.extend(_result_dicts(r, rec.id, boxes, det.scores, det.classes, rles))
            t3 = time.perf_counter()
            r.timing["preprocess_s"] += decode_s + (t1 - t0)
            r.timing["inference_s"] += t2 - t1
            r.timing["postprocess_s"] += t3 - t2
            r.timing["images"] += 1
    wall = time.perf_counter() - wall0
    for r in todo:
        r.timing["wall_s"] = wall
        bad = {k: v for k, v in r.nonfinite.items() if v}
        if bad:
            parts = ", ".join(f"'{k}' in {v} of {len(ds.images)} images" for k, v in sorted(bad.items()))
            raise InputError(f"{r.spec.path}: NaN/Inf in model outputs: {parts}")


# ------------------------------------------------------------------------------------------- cache
def cache_key(run: ModelRun, data_hash: str, image_ids: list[int], settings: Settings) -> str:
    payload = {"model": run.sha256, "data": data_hash,
               "images": hashlib.sha256(",".join(map(str, image_ids)).encode()).hexdigest(),
               "categories": run.category_of, "settings": settings.prediction_key(), "qharness": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    if os.environ.get("QHARNESS_CACHE"):
        return Path(os.environ["QHARNESS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qharness"


def load_cached(path: Path, run: ModelRun) -> bool:
    import gzip

    try:
        with gzip.open(path, "rt") as f:
            doc = json.load(f)
    except (OSError, ValueError, EOFError):
        return False
    run.predictions = doc["predictions"]
    run.timing = doc["timing"]
    run.box_units = doc.get("box_units")
    run.cached = True
    return True


def store_cached(path: Path, run: ModelRun) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump({"predictions": run.predictions, "timing": run.timing, "box_units": run.box_units}, f)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- metrics
def _metrics_for(run: ModelRun, ds: Dataset, settings: Settings) -> dict:
    """{iou_type: {...}} for bbox, and segm when the model produced masks."""
    from validator.metrics import cocoeval, compat

    names = {c["id"]: c["name"] for c in ds.categories}
    image_ids = [r.id for r in ds.images]
    types = ["bbox"]
    if run.contract.num_masks and settings.task != "detect":
        types.append("segm")
    out = {}
    for t in types:
        if settings.metric == "compat":
            res = compat.evaluate_compat(ds.gt, run.predictions, t, image_ids=image_ids)
        else:
            res = cocoeval.evaluate(ds.gt, run.predictions, t, backend=settings.backend, image_ids=image_ids)
        m = {k: _r(v) for k, v in res.stats.items()}
        m.update(mean_recall=_r(res.mean_recall), mean_precision=_r(res.mean_precision), f1=_r(res.f1),
                 f1_conf=_r(res.f1_conf))
        m["per_class"] = {
            str(cid): {"name": names.get(int(cid)), "n_gt": pc.get("n_gt"), "AP50": _r(pc.get("AP50")),
                       "AP50_95": _r(pc.get("AP50_95"))}
            for cid, pc in sorted(res.per_class.items(), key=lambda kv: int(kv[0]))
        }
        out[t] = m
    return out


METRIC_DECIMALS = 12


def _r(v):
    """Rounded to 12 decimals: the two COCO backends may differ in the last ulp (pycocotools adds
    np.spacing(1) to a denominator); far below any reported digit. None for NaN/missing."""
    if v is None:
        return None
    v = float(v)
    return round(v, METRIC_DECIMALS) if np.isfinite(v) else None


# ------------------------------------------------------------------------------------------- outputs
def _write(path: Path, text: str) -> None:
    """Write atomically: a run that fails half-way never leaves a truncated file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _canonical_order(preds: list[dict]) -> list[dict]:
    """The order predictions are written in and evaluated in (COCOeval breaks score ties by order)."""
    return sorted(preds, key=lambda p: (p["image_id"], -p["score"], p["category_id"], p["bbox"]))


def _predictions_json(preds: list[dict]) -> str:
    return "[" + ",\n".join(json.dumps(p, separators=(",", ":")) for p in preds) + "]\n"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"qharness": __version__}
    for pkg in ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "pycocotools", "faster-coco-eval"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class Outcome:
    summary: dict
    timing: dict
    table_md: str
    out_dir: Path


def validate(specs: list[ModelSpec], data: Path, images: Path | None, out_dir: Path, settings: Settings, *,
             workers: int = 1, threads: int | None = None, use_cache: bool = True,
             cache_dir: Path | None = None, skip_missing: bool = False) -> Outcome:
    """Run the whole validation and write every output; raises InputError on bad input."""
    from validator.compare import changed_images, metric_deltas
    from validator.report import tables

    ds = load_dataset(data, images, limit=settings.limit, skip_missing=skip_missing)
    if not ds.images:
        raise InputError(f"{ds.annotations_path}: no images to evaluate")
    runs = open_models(specs, ds, settings, threads)
    hashes = dataset_hashes(ds, workers=max(2, workers))
    image_ids = [r.id for r in ds.images]
    cache_dir = cache_dir or default_cache_dir()
    if use_cache:
        for r in runs:
            r.cache_path = cache_dir / f"{cache_key(r, hashes['sha256'], image_ids, settings)}.json.gz"
            load_cached(r.cache_path, r)
    infer(runs, ds, settings, workers)
    for r in runs:
        if r.cache_path is not None and not r.cached:
            store_cached(r.cache_path, r)

    # Metrics are computed on exactly the predictions that are written (rounded, in written order).
    for r in runs:
        r.predictions = _canonical_order(r.predictions)
    models = []
    for r in runs:
        models.append({
            "name": r.name, "role": r.spec.role, "path": str(r.spec.path), "sha256": r.sha256,
            "format": r.runner.kind,
            "input": {"name": r.runner.input.name, "shape": list(r.runner.input.shape),
                      "dtype": r.runner.input.dtype, "layout": r.runner.input.layout,
                      "quantization": [r.runner.input.scale, r.runner.input.zero_point]},
            "outputs": [{"name": o.name, "shape": list(o.shape), "dtype": o.dtype,
                         "quantization": [o.scale, o.zero_point]} for o in r.runner.outputs],
            "contract": r.contract.describe(), "box_units": r.box_units,
            "class_map": r.category_of, "metadata_source": (r.runner.metadata or {}).get("source"),
            "predictions": f"predictions/{r.name}.json", "num_predictions": len(r.predictions),
            "metrics": _metrics_for(r, ds, settings),
        })
    deltas = []
    floats = [(r, m) for r, m in zip(runs, models, strict=True) if r.spec.role == "float"]
    if floats:
        fr, fm = floats[0]
        for r, m in zip(runs, models, strict=True):
            if r.spec.role != "int8":
                continue
            d = {"float": fr.name, "int8": r.name, "unit": "points (INT8 - float) x 100",
                 "metrics": metric_deltas(fm["metrics"], m["metrics"]),
                 "changed_images": changed_images(fr.predictions, r.predictions, image_ids)}
            deltas.append(d)
    summary = {
        "qharness": __version__,
        "dataset": {"annotations": str(ds.annotations_path), "images_dir": str(ds.images_dir),
                    "images": len(ds.images), "missing_images": len(ds.missing),
                    "annotations_count": len(ds.gt["annotations"]),
                    "categories": [{"id": c["id"], "name": c["name"]} for c in ds.categories], **hashes},
        "settings": {**asdict(settings), "metric_definitions": METRIC_DEFINITIONS},
        "versions": _versions(),
        "models": models,
        "deltas": deltas,
        "timing": "timing.json",
    }
    timing = {r.name: {**r.timing, "cached": r.cached} for r in runs}
    table_md = tables.markdown(summary, timing)

    out_dir.mkdir(parents=True, exist_ok=True)
    for r in runs:
        _write(out_dir / "predictions" / f"{r.name}.json", _predictions_json(r.predictions))
    _write(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    _write(out_dir / "timing.json", json.dumps(timing, indent=2, sort_keys=True) + "\n")
    _write(out_dir / "table.md", table_md)
    _write(out_dir / "table.csv", tables.csv_table(summary))
    _write(out_dir / "per_class.csv", tables.per_class_csv(summary))
    return Outcome(summary, timing, table_md, out_dir)


METRIC_DEFINITIONS = {
    "mAP50_95": "COCO AP averaged over IoU 0.50:0.05:0.95, 101-point interpolation, maxDets 100, crowds ignored",
    "mAP50": "COCO AP at IoU 0.50",
    "AR100": "COCO average recall with at most 100 detections per image",
    "mean_recall": "mean over classes of recall at IoU 0.5, at the confidence that maximises the mean F1 "
                   "(Ultralytics/EdgeFirst 'Mean Recall'), from COCO's own matches",
    "compat": "--metric compat: Ultralytics 8.4 val-style reading, not COCO: crowds dropped, multi-label NMS, "
              "confidence-ordered matching per IoU threshold, 101-point AP closed at the last recall reached, "
              "no 100-detection cap",
}
