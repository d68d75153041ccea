"""`validate` command line: argument parsing only; the work is in run.py.

Exit codes: 0 ok (or the gate passed) · 1 a gate failed (and nothing else) · 2 usage or input error (one line
on stderr naming the file and the problem) · 3 internal error (one line and the path of a saved traceback) ·
130 interrupted.
No exception ever reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from validator import __version__
from validator.cliparse import ArgumentParser, stdout_closed, unknown_command
from validator.errors import InputError

METRIC_DECODING = {
    # metric -> decoding that reading implies (part of the prediction cache key): compat and edgefirst
    # re-decode, so they re-run inference once and are cached from then on
    # (--resample defaults to the resize of the tool each reading lines up with: OpenCV's INTER_LINEAR)
    "coco": {},
    "compat": {"multi_label": True, "clip_boxes": False, "resample": "linear"},
    # its NumPy NMS is class-agnostic, boxes stay unclipped, masks are scored on the prototype grid
    "edgefirst": {"agnostic": True, "clip_boxes": False, "proto_masks": True, "resample": "linear"},
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="validate",
        description="Validate float and INT8 object detectors on a COCO-format dataset and report what "
                    "quantization cost (mAP@0.5, mAP@0.5:0.95, Mean Recall, per-class AP, mask mAP).",
    )
    p.add_argument("--version", action="version", version=f"validate (qharness) {__version__}")
    m = p.add_argument_group("models (at least one model or predictions file)")
    m.add_argument("--float", dest="float_model", type=Path, help="float reference model (.onnx or .tflite)")
    m.add_argument("--int8", dest="int8_models", type=Path, action="append", default=[],
                   help="quantized model (.tflite or .onnx); repeat for several variants")
    m.add_argument("--model", dest="models", type=Path, action="append", default=[],
                   help="a model whose role is read from its tensors (quantized or float); repeatable")
    m.add_argument("--manifest", action="append", default=[], type=Path, metavar="variants.json",
                   help="every variant a `quantize` run made (its variants.json); repeatable")
    m.add_argument("--predictions", action="append", default=[], metavar="NAME=preds.json",
                   help="a COCO results file made elsewhere (e.g. on the target's NPU), scored as a row "
                        "named NAME; repeatable")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, required=True, help="COCO dataset folder or annotation JSON")
    d.add_argument("--images", type=Path, help="image folder (default: found next to the annotations)")
    d.add_argument("--limit", type=int, help="evaluate only the first N images (by id)")
    d.add_argument("--skip-missing", action="store_true", help="count and report missing images instead of failing")
    o = p.add_argument_group("decoding")
    o.add_argument("--task", choices=["detect", "segment", "auto"], default="auto",
                   help="auto (default): masks where the model has mask outputs; detect: boxes only; segment: "
                        "masks required")
    o.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default 0.001)")
    o.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    o.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    o.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    o.add_argument("--resize", choices=["letterbox", "stretch"], default="letterbox",
                   help="letterbox (default: aspect kept, padded, as Ultralytics) or stretch to the input size "
                        "(TF object-detection models)")
    o.add_argument("--resample", choices=["antialias", "linear"],
                   help="image resize filter: antialias (PIL bilinear; default for --metric coco) or linear "
                        "(OpenCV INTER_LINEAR bit for bit, as Ultralytics and EdgeFirst feed their models; "
                        "default for --metric compat and edgefirst)")
    o.add_argument("--boxes", choices=["pixels", "normalized"],
                   help="box units of the outputs (default: read from the outputs themselves)")
    o.add_argument("--input-range", choices=["0,1", "-1,1", "0,255"],
                   help="value range the model expects for pixels 0..255 (default: from the input's "
                        "quantization, then the model's metadata, else 0,1)")
    o.add_argument("--names", help="class names in model class order: label map (N name), one per line, "
                                   "JSON list or {index: name}, Ultralytics data YAML, or .pbtxt label map")
    e = p.add_argument_group("metrics and output")
    e.add_argument("--metric", choices=["coco", "compat", "edgefirst"], default="coco",
                   help="coco: pycocotools-exact (default); compat: Ultralytics-val-style numbers (decodes with "
                        "multi-label NMS and unclipped boxes, as Ultralytics val does); edgefirst: EdgeFirst "
                        "validator-style numbers")
    e.add_argument("--backend", choices=["faster-coco-eval", "pycocotools"], default="faster-coco-eval",
                   help="COCO evaluation library for --metric coco: faster-coco-eval (default, fast) or "
                        "pycocotools (the reference); both give identical numbers")
    e.add_argument("--out", type=Path, help="output folder (default: a new reports/<timestamp>)")
    e.add_argument("--no-cache", action="store_true", help="ignore cached predictions and run inference")
    e.add_argument("--cache-dir", type=Path, help="prediction cache (default: ~/.cache/qharness)")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    g = p.add_argument_group("gate and history (nightly CI)")
    g.add_argument("--gate", type=Path, help="checks as data (TOML, see examples/gate.toml): exit 1 when one fails; "
                                             "writes junit.xml, and the verdict to $GITHUB_STEP_SUMMARY when set")
    g.add_argument("--baseline", metavar="SUMMARY.json|last-accepted|pinned",
                   help="the earlier run max_regression checks compare with: a summary.json, last-accepted (the "
                        "newest passing run of --history: the nightly step) or pinned (the run accepted with "
                        "`validate history accept RUN`); checks with against = \"pinned\" always use the pin")
    g.add_argument("--history", type=Path, help="append this run to a SQLite history (see: validate history)")
    x = p.add_argument_group("diagnosis (why an INT8 model lost accuracy)")
    x.add_argument("--diagnose", action="store_true",
                   help="error types (TIDE), per-output error by role, output-scale lint, op audit, class collapse, "
                        "calibration overlap, layer-wise error and layer sensitivity; diagnostics.json and a report "
                        "section")
    x.add_argument("--diagnose-images", type=int, default=8, metavar="N",
                   help="images for the per-output and layer-wise errors (default 8)")
    x.add_argument("--diagnose-layers", type=int, default=10, metavar="N",
                   help="worst layers tried one by one in higher precision (default 10; 0: no sensitivity)")
    x.add_argument("--diagnose-split", type=int, default=50, metavar="N",
                   help="images layer sensitivity is scored on: the last N evaluated (default 50)")
    x.add_argument("--keep-precision", choices=["float", "int16"], default="float",
                   help="what a sensitive layer is kept in when measuring its sensitivity (default float)")
    x.add_argument("--float-tflite", type=Path,
                   help="float TFLite parent of the INT8 TFLite models, for layer-wise error when they have no "
                        "quantizer manifest")
    r = p.add_argument_group("execution")
    r.add_argument("--workers", type=int, default=2, help="image-decoding threads running ahead (default 2)")
    r.add_argument("--threads", type=int,
                   help="inference threads per model (default: cores / models with several models, which then "
                        "run side by side; the runtime's choice with one)")
    r.add_argument("--delegate", metavar="LIB.so[:key=value,...]",
                   help="TFLite external delegate (e.g. the target's NPU) for every TFLite model")
    d = p.add_argument_group("more than one machine (Ray: pip install \"qharness[ray]\")")
    d.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="shard the images over Ray actors: 'local' (the default: start Ray on this machine), "
                        "'auto' (the running cluster) or a cluster address; outputs are byte-identical to a run "
                        "without it. The dataset and models must be on a path every worker sees")
    d.add_argument("--ray-workers", type=int, metavar="N", help="actors (default: the cluster's CPUs / threads)")
    d.add_argument("--ray-threads", type=int, metavar="N",
                   help="inference threads per model in each actor (default: as a local run)")
    d.add_argument("--ray-shard", type=int, default=64, metavar="N", help="images per shard (default 64)")
    return p


def _ray(args):
    if args.ray is None:
        return None
    from validator.distributed import RayOptions

    if args.ray_shard < 1 or (args.ray_workers is not None and args.ray_workers < 1) or \
            (args.ray_threads is not None and args.ray_threads < 1):
        raise InputError("need --ray-shard >= 1, --ray-workers >= 1 and --ray-threads >= 1")
    return RayOptions(address=args.ray, workers=args.ray_workers, threads=args.ray_threads, shard=args.ray_shard)


def _crash_file() -> Path:
    fd, name = tempfile.mkstemp(prefix=f"qharness-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    os.close(fd)
    return Path(name)


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--input-range -1,1``: argparse takes ``-1,1`` for an option; join it as ``--input-range=-1,1``."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--input-range" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--input-range={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def history_main(argv: list[str]) -> int:
    """``validate history --db FILE``: the trend table on stdout and a trend plot; ``validate history accept
    RUN --db FILE``: pin run RUN as the reference drift is measured against."""
    if argv[:1] == ["accept"]:
        return _history_accept(argv[1:])
    if argv and not argv[0].startswith("-"):
        return unknown_command("validate history", argv[0], ["accept"])
    p = ArgumentParser(prog="validate history", description="Print the trend of recorded runs and plot it. "
                       "`validate history accept RUN --db FILE` pins a run as the reference.")
    p.add_argument("--db", type=Path, required=True, help="the history database (--history of validate)")
    p.add_argument("--metric", action="append", default=None,
                   help="metric keys or patterns to show, e.g. '*/bbox/mAP50_95' (repeatable)")
    p.add_argument("--last", type=int, default=20, help="runs in the table (default 20)")
    p.add_argument("--plot", type=Path, help="trend plot PNG (default: trend.png beside the database)")
    args = p.parse_args(argv)
    from validator.gate import history

    try:
        if not args.db.exists():
            raise InputError(f"{args.db}: history database not found")
        table = history.trend_table(args.db, args.metric, last=args.last)
        plot = history.trend_plot(args.db, args.plot or args.db.with_name("trend.png"), args.metric)
    except InputError as e:
        print(f"validate history: error: {e}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(table)
        print(f"\ntrend plot: {plot}", flush=True)
    except BrokenPipeError:  # `validate history | head -3`
        stdout_closed()
    return 0


def _history_accept(argv: list[str]) -> int:
    p = ArgumentParser(prog="validate history accept",
                       description="Pin a recorded run as the reference: gate checks with against = \"pinned\" "
                                   "(and --baseline pinned) measure the drift since it. The run is marked accepted.")
    p.add_argument("run", type=int, help="the run's number (the Run column of validate history)")
    p.add_argument("--db", type=Path, required=True, help="the history database (--history of validate)")
    p.add_argument("--note", help="why this run is the reference (kept with the pin)")
    args = p.parse_args(argv)
    from validator.gate import history

    try:
        if not args.db.exists():
            raise InputError(f"{args.db}: history database not found")
        run = history.accept(args.db, args.run, time=history.utc_now(), note=args.note)
    except InputError as e:
        print(f"validate history accept: error: {e}", file=sys.stderr)
        return 2
    print(f"run {run['id']} ({run['time']}, {run['verdict']}) is the pinned reference in {args.db}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["history"]:
        return history_main(argv[1:])
    if argv and not argv[0].startswith("-"):  # validate has one subcommand and no positional arguments
        return unknown_command("validate", argv[0], ["history"])
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(argv))
    if not (args.float_model or args.int8_models or args.models or args.predictions or args.manifest):
        parser.error("give at least one model or results file: --float, --int8, --model, --manifest or --predictions")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.diagnose_images < 1 or args.diagnose_layers < 0 or args.diagnose_split < 1:
        parser.error("need --diagnose-images >= 1, --diagnose-layers >= 0, --diagnose-split >= 1")
    if args.float_tflite is not None and not args.float_tflite.is_file():
        print(f"validate: error: {args.float_tflite}: --float-tflite model not found", file=sys.stderr)
        return 2
    if not 0 <= args.conf < 1 or not 0 < args.iou <= 1 or args.max_det < 1:
        parser.error("need 0 <= --conf < 1, 0 < --iou <= 1, --max-det >= 1")
    reserved = None
    try:
        from validator.report.outputs import reserve_default
        from validator.run import GateOptions, ModelSpec, PredictionsSpec, Settings, validate
        from validator.sources import read_manifest

        specs = []
        if args.float_model:
            specs.append(ModelSpec(args.float_model, "float"))
        specs += [ModelSpec(p, "int8") for p in args.int8_models]
        specs += [ModelSpec(p, "auto") for p in args.models]
        for m in args.manifest:
            specs += read_manifest(m)
        preds = [PredictionsSpec.parse(t) for t in args.predictions]
        decoding = {"agnostic": args.agnostic, **METRIC_DECODING[args.metric]}
        if args.resample:
            decoding["resample"] = args.resample
        settings = Settings(conf=args.conf, iou=args.iou, max_det=args.max_det, resize=args.resize,
                            boxes=args.boxes, task=args.task, metric=args.metric, backend=args.backend,
                            limit=args.limit, names=args.names, input_range=args.input_range,
                            delegate=args.delegate, **decoding)
        out = args.out
        if out is None:
            out = reserved = reserve_default(Path("reports") / time.strftime("%Y%m%d-%H%M%S"))
        outcome = validate(specs, args.data, args.images, out, settings, predictions=preds, workers=args.workers,
                           threads=args.threads, use_cache=not args.no_cache, cache_dir=args.cache_dir,
                           skip_missing=args.skip_missing, quiet=args.quiet,
                           gating=GateOptions(args.gate, args.baseline, args.history),
                           diagnosis=_diagnosis(args), ray=_ray(args))
    except InputError as e:
        _release(reserved)
        print(f"validate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _release(reserved)
        print("validate: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: one line and the traceback saved, never exit 1  # noqa: BLE001
        _release(reserved)
        try:
            crash = _crash_file()
            crash.write_text(f"validate {__version__}\nargv: {sys.argv if argv is None else argv}\n\n"
                             + traceback.format_exc())
            where = f"traceback saved to {crash}"
        except OSError:
            where = "traceback could not be saved"
        msg = " ".join(str(e).split())[:200]
        print(f"validate: internal error: {type(e).__name__}: {msg} ({where}; please report it)", file=sys.stderr)
        return 3
    ds = outcome.summary["dataset"]
    extra = f", {ds['missing_images']} missing images skipped" if ds["missing_images"] else ""
    try:  # the table holds the gate's verdict line (and each failed check) when gated
        sys.stdout.write(outcome.table_md)
        if outcome.diagnostics is not None:
            from validator.diagnose.run import text

            sys.stdout.write(text(outcome.diagnostics))
        print(f"\n{ds['images']} images{extra}; metric: {outcome.summary['metric']}. Outputs in {out}/", flush=True)
    except BrokenPipeError:  # `validate ... | head`: the results are written; the exit code stands
        stdout_closed()
    if outcome.failures:
        return _stage_failures(outcome.failures, argv, out)
    return outcome.exit_code


def _diagnosis(args):
    if not args.diagnose:
        return None
    from validator.diagnose.run import DiagnoseOptions

    return DiagnoseOptions(images=args.diagnose_images, layers=args.diagnose_layers, split=args.diagnose_split,
                           precision=args.keep_precision, float_tflite=args.float_tflite,
                           sensitivity=args.diagnose_layers > 0)


def _stage_failures(failures, argv: list[str], out: Path) -> int:
    """Internal errors after the results landed (the report): one line naming the stage, tracebacks saved, 3."""
    try:
        crash = _crash_file()
        crash.write_text(f"validate {__version__}\nargv: {argv}\n\n"
                         + "\n".join(f"[{f.stage}]\n{f.traceback}" for f in failures))
        where = f"traceback saved to {crash}"
    except OSError:
        where = "traceback could not be saved"
    first = failures[0]
    more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
    print(f"validate: internal error in the {first.stage} stage{more}: {first.error}; summary.json, the tables and "
          f"predictions are in {out}/ ({where}; please report it)", file=sys.stderr)
    return 3


def _release(reserved: Path | None) -> None:
    """Remove a default output folder reserved for a run that then failed (it holds only the marker)."""
    if reserved is None:
        return
    try:
        for p in reserved.iterdir():
            if p.name == ".qharness":
                p.unlink()
        reserved.rmdir()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
