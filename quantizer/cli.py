"""`quantize` command line: argument parsing and exit codes only; the work is in run.py.

Exit codes as ``validate``: 0 ok · 2 usage or input error (one line on stderr naming the file and the
problem, found before the long work where it can be) · 3 internal error (one line and the path of a saved
traceback) · 130 interrupted. Progress goes to stderr, the summary table of what was built to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from quantizer.strategies import DEFAULT_BINS, MIN_WIDTH, parse_strategy
from validator import __version__
from validator.cliparse import ArgumentParser, stdout_closed

LAYOUT_CHOICES = ("monolithic", "split")
FORMAT_CHOICES = ("tflite", "onnx")
GRANULARITY_CHOICES = ("channel", "tensor")
IO_CHOICES = ("int8", "uint8")


def _list(text: str, choices=None, what: str = "value") -> tuple[str, ...]:
    items = []
    for t in (t.strip() for t in text.split(",")):
        if not t:
            continue
        if choices is not None and t not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} '{t}' (choose from {', '.join(choices)})")
        if t not in items:
            items.append(t)
    if not items:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return tuple(items)


def _samples(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(sorted({int(t) for t in _list(text, what="sample count")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--samples takes comma-separated integers, got '{text}'") from None
    if vals[0] < 1:
        raise argparse.ArgumentTypeError("--samples must be >= 1")
    return vals


def _strategies(text: str):
    try:
        parsed = [parse_strategy(t) for t in _list(text, what="strategy")]
        return tuple({s.spec: s for s in parsed}.values())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="quantize",
        description="Make INT8 variants of a float detector (TFLite via ai-edge-quantizer, ONNX QDQ via "
                    "onnxruntime) under several calibration strategies from one streamed statistics pass; "
                    "each variant gets a manifest, DIR/variants.json lists them (validate --manifest).",
        epilog="Comma lists make the cross product of variants. ONNX -> TFLite needs the onnx2tf environment "
               "once: python -m quantizer.convert setup.")
    p.add_argument("--version", action="version", version=f"quantize (qharness) {__version__}")
    p.add_argument("--model", type=Path, required=True, help="float model: .onnx (YOLOv8/11 export) or .tflite")
    p.add_argument("--calib", type=Path, required=True,
                   help="calibration images: a folder of images or a COCO dataset (folder or annotation JSON)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the variants and variants.json")
    p.add_argument("--samples", type=_samples, default=(200,),
                   help="calibration image counts, e.g. 200,500 (the first N images of --calib; default 200)")
    p.add_argument("--strategy", type=_strategies, default=_strategies("minmax"),
                   help="minmax, percentile[:P] (default 99.99), entropy, mse; fp16 and dynamic make the "
                        "uncalibrated reference rows (TFLite). Default: minmax")
    p.add_argument("--granularity", type=lambda t: _list(t, GRANULARITY_CHOICES, "granularity"),
                   default=("channel",), help="weight quantization: channel, tensor (default channel)")
    p.add_argument("--io", type=lambda t: _list(t, IO_CHOICES, "input type"), default=("int8",),
                   help="TFLite input type: int8 or uint8 (raw pixels); outputs are int8 (default int8)")
    p.add_argument("--outputs", type=lambda t: _list(t, LAYOUT_CHOICES, "layout"), default=None,
                   help="output layout of an ONNX model: split ([0,1] boxes, scores, coefficients, protos as "
                        "separate outputs) and/or monolithic (as exported). Default: split")
    p.add_argument("--format", type=lambda t: _list(t, FORMAT_CHOICES, "format"), default=("tflite",),
                   help="tflite and/or onnx (QDQ) variants (default tflite)")
    p.add_argument("--recipe", default="static_int8",
                   help="ai-edge-quantizer recipe JSON for the TFLite INT8 variants (default: the packaged "
                        "static_int8: int8 activations and weights)")
    a = p.add_argument_group("advanced")
    a.add_argument("--check-images", type=int, default=8,
                   help="held-out images (after the calibration ones) for each variant's SQNR check (default 8)")
    a.add_argument("--bins", type=int, default=DEFAULT_BINS, help=f"histogram bins (default {DEFAULT_BINS})")
    a.add_argument("--min-range", type=float, default=MIN_WIDTH,
                   help=f"minimum activation range width (default {MIN_WIDTH})")
    a.add_argument("--resize", choices=["letterbox", "stretch"], default="letterbox",
                   help="how calibration images meet the input size, as validate's --resize (default letterbox)")
    a.add_argument("--resample", choices=["antialias", "linear"], default="antialias",
                   help="resize filter, as validate's --resample (default antialias)")
    a.add_argument("--stats-dir", type=Path, help="where statistics are cached (default ~/.cache/qharness/calibration)")
    a.add_argument("--threads", type=int, help="inference threads (default: the runtime's choice)")
    a.add_argument("--quiet", action="store_true", help="no progress output (warnings are still printed)")
    t = p.add_argument_group("accuracy-aware search (--tune; docs/quantizer.md#tune)")
    t.add_argument("--tune", type=Path, metavar="T",
                   help="a COCO-format tune split, disjoint from --calib (and --eval) by content: every variant is "
                        "scored on it with the validator, then layers are promoted while the drop exceeds --max-drop")
    t.add_argument("--max-drop", type=float, default=1.0, metavar="PTS",
                   help="largest mAP@0.5:0.95 (boxes) drop below the float model on --tune, in points (default 1.0)")
    t.add_argument("--max-mask-drop", type=float, default=0.5, metavar="PTS",
                   help="segmentation: no candidate may lose more mask mAP@0.5:0.95 than this, or than the best "
                        "all-INT8 variant does (default 0.5)")
    t.add_argument("--allow", choices=["none", "int16", "float"], default="none",
                   help="what a sensitive layer may become: none (every op INT8), int16 (16-bit activations, int8 "
                        "weights) or float (default none)")
    t.add_argument("--budget", type=int, default=8, metavar="N", help="cumulative promotions tried at most (default 8)")
    t.add_argument("--tune-layers", type=int, default=8, metavar="N",
                   help="layers probed one at a time in higher precision (the ones adding most error; default 8)")
    t.add_argument("--no-bias-correction", action="store_true",
                   help="do not try empirical bias correction of the best all-INT8 variant (tried by default)")
    t.add_argument("--eval", type=Path, metavar="D",
                   help="the final evaluation set: checked disjoint from --tune before the search")
    d = p.add_argument_group("more than one machine (Ray: pip install \"qharness[ray]\")")
    d.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="calibration statistics by shard on Ray: 'local', 'auto' or a cluster address; exactly the "
                        "statistics of one machine. The model and images must be on a path every worker sees")
    d.add_argument("--ray-shard", type=int, default=32, metavar="N", help="calibration images per shard (default 32)")
    p.add_argument("--force", action="store_true",
                   help="replace the variants an earlier run left in --out (without it such a folder is refused)")
    return p


def _crash_file() -> Path:
    fd, name = tempfile.mkstemp(prefix=f"qharness-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    os.close(fd)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.check_images < 0 or args.bins < 256 or args.bins % 2 or not 0 < args.min_range < 1:
        parser.error("need --check-images >= 0, an even --bins >= 256 and 0 < --min-range < 1")

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        from quantizer.convert import ConverterMissing
        from quantizer.run import Options, run
        from validator.errors import InputError

        opts = Options(model=args.model, calib=args.calib, out=args.out, samples=args.samples,
                       strategies=args.strategy, granularities=args.granularity, ios=args.io,
                       layouts=args.outputs, formats=args.format, recipe=args.recipe,
                       check_images=args.check_images, bins=args.bins, min_width=args.min_range,
                       resize=args.resize, resample=args.resample, stats_dir=args.stats_dir, threads=args.threads,
                       quiet=args.quiet, force=args.force, ray=args.ray, ray_shard=max(1, args.ray_shard))
        tuned = None
        if args.tune is not None:
            from quantizer import tune
            from quantizer.calibration import calibration_images

            topts = tune.TuneOptions(data=args.tune, max_drop=args.max_drop, allow=args.allow, budget=args.budget,
                                     layers=args.tune_layers, eval=args.eval,
                                     bias_correction=not args.no_bias_correction,
                                     max_mask_drop=args.max_mask_drop)
            calib = calibration_images(args.calib)
            tune_ds = tune.prepare(topts, calib.paths[:max(args.samples)])  # before the long work
        outcome = run(opts, log, warn=lambda msg: print(msg, file=sys.stderr, flush=True))
        if args.tune is not None:
            tuned = tune.search(opts, topts, tune_ds, outcome.entries, log)
            if tuned["winner"] is not None:
                tune.add_to_index(args.out, tuned["winner"])
    except (InputError, ConverterMissing) as e:
        print(f"quantize: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from quantizer.run import Interrupted
        from quantizer.tune import Interrupted as TuneInterrupted

        known = isinstance(e, (Interrupted, TuneInterrupted))
        print(f"quantize: {e.message() if known else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: one line and the traceback saved  # noqa: BLE001
        from quantizer.run import tool_versions

        try:
            crash = _crash_file()
            crash.write_text(f"quantize {tool_versions()['qharness']}\nargv: {sys.argv if argv is None else argv}"
                             f"\n\n" + traceback.format_exc())
            where = f"traceback saved to {crash}"
        except OSError:
            where = "traceback could not be saved"
        msg = " ".join(str(e).split())[:300]
        print(f"quantize: internal error: {type(e).__name__}: {msg} ({where}; please report it)", file=sys.stderr)
        return 3
    try:
        sys.stdout.write(outcome.table)
        if tuned is not None:
            sys.stdout.write("\n" + tuned["table"])
            if tuned["winner"] is not None:
                print(f"tuned variant: {tuned['winner']['path']} (in variants.json); search: {tuned['search']}")
            else:
                print(f"no new variant: the best is one of the sweep's; search: {tuned['search']}")
        print(f"variants and manifests in {args.out}/ (index: {outcome.index})", flush=True)
    except BrokenPipeError:
        stdout_closed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
