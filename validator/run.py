"""Orchestration of `validate`: dataset -> sources -> cache -> inference -> metrics -> compare -> outputs.

Nothing here computes anything itself; each step is a module of its own. Bad input is found before
the long work (output and cache folders, dataset, every model and results file are checked first).
Predictions are written in COCO results format and the metrics are computed from exactly what is
written (rounded values included, in the written order), so an independent pycocotools run on
``predictions/<name>.json`` reproduces our numbers exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import groupby
from pathlib import Path

from validator import __version__
from validator.cache import PredictionCache, cache_key, default_cache_dir
from validator.data.coco import Dataset, dataset_hashes, load_dataset, size_mismatches
from validator.errors import StageFailure
from validator.gate import nightly
from validator.gate.nightly import GateOptions
from validator.predictions import PredictionWriter, compact, read_predictions, write_lines
from validator.progress import Progress
from validator.report.outputs import OutputDir, check_cache_dir
from validator.runners import DelegateSpec
from validator.sources import ModelSpec, PredictionsSpec, Source, open_sources, reference

__all__ = ["METRIC_DECIMALS", "GateOptions", "ModelSpec", "Outcome", "PredictionsSpec", "Settings", "validate"]


@dataclass(frozen=True)
class Settings:
    """Everything that changes predictions (part of the cache key) or metrics."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    agnostic: bool = False
    resize: str = "letterbox"
    resample: str = "antialias"  # antialias (PIL bilinear) | linear (OpenCV INTER_LINEAR, bit for bit)
    boxes: str | None = None  # None = decide from the outputs
    task: str = "auto"
    metric: str = "coco"
    backend: str = "faster-coco-eval"
    limit: int | None = None
    names: str | None = None
    multi_label: bool = False  # one box may carry several classes (Ultralytics val does; set by compat)
    clip_boxes: bool = True  # clip boxes to the image (COCO results); compat keeps them as drawn, like Ultralytics
    input_range: str | None = None  # --input-range override of the input transform
    proto_masks: bool = False  # also write masks on the prototype grid (edgefirst scores masks there)
    delegate: str | None = None  # --delegate LIB.so[:k=v,...] for TFLite models

    def prediction_key(self) -> dict:
        d = asdict(self)
        for k in ("metric", "backend", "names"):  # names: the class map itself is in the key
            d.pop(k)
        return d


# ------------------------------------------------------------------------------------------- metrics
METRIC_DECIMALS = 12


def _r(v):
    """Rounded to 12 decimals: the two COCO backends may differ in the last ulp (pycocotools adds
    np.spacing(1) to a denominator); far below any reported digit. None for NaN/missing."""
    import math

    if v is None:
        return None
    v = float(v)
    return round(v, METRIC_DECIMALS) if math.isfinite(v) else None


def _evaluate(src: Source, ds: Dataset, settings: Settings, keep_images: bool = False, done=lambda: None) -> dict:
    """{iou_type: CocoResult}: bbox always, segm when the source has masks. The source's detections are
    read from its results file for this call only (one model's detections in memory at a time).
    ``done()`` is called after each evaluation (progress)."""
    from validator.metrics import cocoeval, compat

    preds = read_predictions(src.predictions_path)
    src.compact = compact(preds)  # before the backends may take the dicts over (owned=True); the one read
    image_ids = [r.id for r in ds.images]
    types = ["bbox"] + (["segm"] if src.has_masks else [])
    out = {}
    for t in types:
        if settings.metric == "compat":
            out[t] = compat.evaluate_compat(ds.gt, preds, t, image_ids=image_ids)
        elif settings.metric == "edgefirst":
            from validator.metrics import edgefirst

            frames = _letterboxes(src, ds, settings) if t == "segm" else None
            out[t] = edgefirst.evaluate_edgefirst(ds.gt, preds, t, image_ids=image_ids, frames=frames)
        else:
            out[t] = cocoeval.evaluate(ds.gt, preds, t, backend=settings.backend, image_ids=image_ids, owned=True,
                                       keep_images=keep_images)
        done()
    return out


def _letterboxes(src: Source, ds: Dataset, settings: Settings) -> dict | None:
    """{image id: Letterbox} of a model whose predictions carry prototype-grid masks, else None."""
    from validator.tensors import Letterbox

    if not (src.kind == "model" and settings.proto_masks and src.num_predictions and src.proto_masks):
        return None
    place = Letterbox.stretch if settings.resize == "stretch" else Letterbox.fit
    return {r.id: place((r.height, r.width), src.runner.input.hw) for r in ds.images}


def _metrics_dict(results: dict, ds: Dataset) -> dict:
    names = {c["id"]: c["name"] for c in ds.categories}
    out = {}
    for t, res in results.items():
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


def _paired_recall(ref_results: dict, results: dict) -> dict:
    """{iou_type: {...}}: this model's recall/precision at the reference's F1-optimal confidence."""
    from validator.metrics.recall import f1_operating_point

    out = {}
    for t, res in results.items():
        ref = ref_results.get(t)
        if ref is None or ref.f1_conf is None or res.classes is None:
            continue
        op = f1_operating_point(res.classes, at_conf=ref.f1_conf)
        if op is not None:
            out[t] = {"conf": _r(ref.f1_conf), "mean_recall": _r(op.recall), "mean_precision": _r(op.precision),
                      "f1": _r(op.f1)}
    return out


# ------------------------------------------------------------------------------------------- outputs
def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"qharness": __version__}
    for pkg in ("numpy", "onnxruntime", "onnx", "ai-edge-litert", "tflite-runtime", "pycocotools",
                "faster-coco-eval"):
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
    verdict: object | None = None  # validator.gate.checks.Verdict of a gated run
    failures: tuple[StageFailure, ...] = ()  # internal errors after the results landed (the report): exit 3
    diagnostics: dict | None = None  # validate --diagnose (diagnostics.json)

    @property
    def exit_code(self) -> int:
        if self.failures:
            return 3
        return 0 if self.verdict is None else self.verdict.exit_code


def _cache_inputs(src: Source, settings: Settings) -> dict:
    return {"class_map": sorted(src.class_map.category_of.items()), "transform": src.transform.describe(),
            "settings": settings.prediction_key()}


def validate(models: list[ModelSpec], data: Path, images: Path | None, out_dir: Path, settings: Settings, *,
             predictions: list[PredictionsSpec] = (), workers: int = 1, threads: int | None = None,
             use_cache: bool = True, cache_dir: Path | None = None, skip_missing: bool = False,
             quiet: bool = False, gating: GateOptions | None = None, diagnosis=None, ray=None) -> Outcome:
    """Run the whole validation and write every output; raises InputError on bad input."""
    from validator.compare import changed_images, head_differences, metric_deltas
    from validator.inference import run_models
    from validator.report import tables
    from validator.report.assemble import report_data
    from validator.report.html import SECTIONS, render_report

    out = OutputDir(out_dir)
    out.check()  # from here the folder is locked until commit() or abort()
    writers: dict = {}
    try:
        plan = nightly.prepare(gating or GateOptions())
        cache_dir = cache_dir or default_cache_dir()
        if use_cache:
            check_cache_dir(cache_dir)
        delegate = DelegateSpec.parse(settings.delegate) if settings.delegate else None
        ds = load_dataset(data, images, limit=settings.limit, skip_missing=skip_missing)
        sources = open_sources(list(models), list(predictions), ds, settings, threads, delegate)
        hashes = dataset_hashes(ds, workers=max(2, workers))
        frames = size_mismatches(ds, workers=max(2, workers))
        image_ids = [r.id for r in ds.images]
        cache = PredictionCache(cache_dir if use_cache else None)
        keys = {}
        for s in sources:
            s.predictions_path = out.path(f"predictions/{s.name}.json")
            if s.kind == "predictions":  # a results file: written out in our order
                w = PredictionWriter(s.predictions_path)
                for _, group in groupby(s.pending, key=lambda d: d["image_id"]):
                    w.add(list(group))
                s.num_predictions, s.pending = w.close(), None
                continue
            keys[s.name] = cache_key(s.sha256, hashes["sha256"], image_ids, _cache_inputs(s, settings))
            hit = cache.read(keys[s.name])
            if hit is not None:
                header, lines = hit
                try:
                    s.num_predictions = write_lines(s.predictions_path, lines)
                except (OSError, EOFError, ValueError):  # a damaged entry is a miss
                    s.num_predictions = -1
                if s.num_predictions != header.get("count"):
                    hit = None
            if hit is not None:
                s.timing, s.box_units = header["timing"], header.get("box_units")
                s.dropped_detections = header.get("dropped_detections", 0)
                s.proto_masks = bool(header.get("proto_masks"))
                s.cached = True
            else:
                writers[s.name] = PredictionWriter(s.predictions_path, cache.path(keys[s.name]))
        execution = {}
        if ray is not None:  # --ray: the same loop, sharded over actors; the same bytes written here
            from validator.distributed import run_models_ray

            execution = run_models_ray(sources, ds, settings, writers, ray, data=data, images=images,
                                       skip_missing=skip_missing, threads=threads, quiet=quiet)
        else:
            run_models(sources, ds, settings, workers, writers, quiet=quiet)
        for s in sources:
            w = writers.pop(s.name, None)
            if w is None:
                continue
            s.proto_masks = bool(w.with_proto)
            s.num_predictions = w.close({"format": 2, "timing": s.timing, "box_units": s.box_units,
                                         "dropped_detections": s.dropped_detections,
                                         "proto_masks": s.proto_masks})

        # Metrics are computed on exactly the predictions that are written (rounded, in written order).
        keep_images = plan.resamples > 0 and settings.metric == "coco"  # the gate's intervals read them
        n_evals = sum(1 + bool(s.has_masks) for s in sources)
        with Progress(n_evals, "validate: metrics", "evaluations", quiet=quiet) as p:
            results = {s.name: _evaluate(s, ds, settings, keep_images, p.update) for s in sources}
        ref = reference(sources)
        rows = []
        for s in sources:
            row = {**s.describe(), "metrics": _metrics_dict(results[s.name], ds)}
            if ref is not None and s is not ref:
                row["at_reference_confidence"] = _paired_recall(results[ref.name], results[s.name])
            rows.append(row)
        deltas = []
        if ref is not None:
            ref_row = next(r for r in rows if r["name"] == ref.name)
            for s, row in zip(sources, rows, strict=True):
                if s is ref:
                    continue
                delta = {"reference": ref.name, "model": s.name, "unit": "points (model - reference) x 100",
                         "metrics": metric_deltas(ref_row["metrics"], row["metrics"],
                                                  row.get("at_reference_confidence")),
                         "changed_images": changed_images(ref.compact, s.compact, image_ids)}
                heads = head_differences(ref.contract, s.contract, (ref.box_units, s.box_units))
                if heads:
                    delta["heads_differ"] = heads
                deltas.append(delta)
        summary = {
            "qharness": __version__,
            "metric": settings.metric,
            "dataset": {"annotations": str(ds.annotations_path), "images_dir": str(ds.images_dir),
                        "images": len(ds.images), "missing_images": len(ds.missing),
                        "annotations_count": len(ds.gt["annotations"]),
                        "size_mismatches": frames,
                        "categories": [{"id": c["id"], "name": c["name"]} for c in ds.categories], **hashes},
            "settings": {**asdict(settings), "metric_definitions": metric_definitions(settings.metric)},
            "versions": _versions(),
            "models": rows,
            "deltas": deltas,
            "timing": "timing.json",
        }
        verdict = nightly.judge(plan, summary, nightly.samples_for(plan, results, ref.name if ref else None,
                                                                   len(ds.images), quiet=quiet))
        if verdict is not None:
            summary["gate"] = verdict.to_dict()
        timing = {s.name: {**s.timing, "cached": s.cached} for s in sources if s.kind == "model"}
        table_md = tables.markdown(summary, timing)

        summary_text = json.dumps(summary, indent=2, sort_keys=False) + "\n"
        out.write("summary.json", summary_text)
        if verdict is not None:
            out.write("junit.xml", nightly.junit(plan, verdict))
        out.write("timing.json", json.dumps({**timing, **({"execution": execution} if execution else {})},
                                            indent=2, sort_keys=True) + "\n")
        out.write("table.md", table_md)
        out.write("table.csv", tables.csv_table(summary))
        out.write("per_class.csv", tables.per_class_csv(summary))
        # The report only presents what is already written: a failure in it costs the page (or one of its
        # sections), never the results; the run then exits 3 naming the stage (StageFailure).
        failures: list[StageFailure] = []
        diagnostics = None
        if diagnosis is not None:  # validate --diagnose: a failure costs the diagnosis, never the results
            from validator.diagnose.run import diagnose, to_json

            try:
                diagnostics = diagnose(sources, ds, settings, summary, diagnosis, quiet=quiet)
                out.write("diagnostics.json", to_json(diagnostics))
            except Exception as e:  # noqa: BLE001  one line and exit 3 in the CLI, after the results land
                failures.append(StageFailure.capture("diagnose", e))
        try:
            with Progress(len(SECTIONS) + 1, "validate: report", "sections", quiet=quiet) as p:
                data = report_data(summary, timing, table_md, results, sources, ds, verdict=verdict,
                                   gate_markdown=nightly.markdown(verdict),
                                   history=nightly.history_view(plan, summary, verdict), diagnostics=diagnostics)
                p.update()
                out.write("report.html", render_report(data, failures, done=p.update))
        except Exception as e:  # noqa: BLE001  one line and exit 3 in the CLI, after the results land
            failures.append(StageFailure.capture("report", e))
        final = out.commit()
    finally:
        for w in writers.values():
            w.abort()
        out.abort()
    nightly.record(plan, summary, summary_text, verdict, table_md)
    return Outcome(summary, timing, table_md, final, verdict, tuple(failures), diagnostics)


_COMMON_DEFINITIONS = {
    "mean_recall": "mean over classes of recall at IoU 0.5, at the confidence that maximises the mean F1 "
                   "(Ultralytics/EdgeFirst 'Mean Recall'), from the metric's own matches",
    "delta_mean_recall": "paired: the model's mean recall at the reference (float) model's F1-optimal "
                         "confidence minus the reference's own mean recall there",
}
METRIC_DEFINITIONS = {
    "coco": {
        "mAP50_95": "COCO AP averaged over IoU 0.50:0.05:0.95, 101-point interpolation, maxDets 100, crowds ignored",
        "mAP50": "COCO AP at IoU 0.50",
        "AR100": "COCO average recall with at most 100 detections per image",
    },
    "compat": {
        "mAP50_95": "Ultralytics 8.4 val-style AP (not COCO) averaged over IoU 0.50:0.05:0.95: crowds dropped (a "
                    "detection on a crowd is a false positive), multi-label NMS, boxes not clipped, "
                    "confidence-ordered matching per IoU threshold, 101-point AP closed at the last recall "
                    "reached, no 100-detection cap",
        "mAP50": "the same at IoU 0.50",
        "AR100": "not defined by this reading (null)",
    },
    "edgefirst": {
        "mAP50_95": "EdgeFirst validator 6.0.9-style AP (not COCO), see validator/metrics/edgefirst.py",
        "mAP50": "the same at IoU 0.50",
        "AR100": "not defined by this reading (null)",
    },
}


def metric_definitions(metric: str) -> dict:
    """What each reported number means under this run's ``--metric`` (stored in summary.json)."""
    return {**METRIC_DEFINITIONS.get(metric, {}), **_COMMON_DEFINITIONS}
