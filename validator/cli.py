"""`validate` command line: argument parsing only; the work is in run.py.

Exit codes: 0 ok · 1 gate failed · 2 usage or input error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from validator.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="validate",
        description="Validate float and INT8 object detectors on a COCO-format dataset and report what "
                    "quantization cost (mAP@0.5, mAP@0.5:0.95, Mean Recall, per-class AP, mask mAP).",
    )
    m = p.add_argument_group("models (at least one)")
    m.add_argument("--float", dest="float_model", type=Path, help="float reference model (.onnx or .tflite)")
    m.add_argument("--int8", dest="int8_models", type=Path, action="append", default=[],
                   help="quantized model (.tflite or .onnx); repeat for several variants")
    m.add_argument("--model", dest="models", type=Path, action="append", default=[],
                   help="a model validated on its own (role from its tensors); repeatable")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, required=True, help="COCO dataset folder or annotation JSON")
    d.add_argument("--images", type=Path, help="image folder (default: found next to the annotations)")
    d.add_argument("--limit", type=int, help="evaluate only the first N images (by id)")
    d.add_argument("--skip-missing", action="store_true", help="count and report missing images instead of failing")
    o = p.add_argument_group("decoding")
    o.add_argument("--task", choices=["detect", "segment", "auto"], default="auto")
    o.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default 0.001)")
    o.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    o.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    o.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    o.add_argument("--resize", choices=["letterbox", "stretch"], default="letterbox")
    o.add_argument("--boxes", choices=["pixels", "normalized"], help="box units of the outputs (default: detect)")
    o.add_argument("--names", help="class names file, model class order (one per line or JSON list)")
    e = p.add_argument_group("metrics and output")
    e.add_argument("--metric", choices=["coco", "compat"], default="coco",
                   help="coco: pycocotools-exact (default); compat: Ultralytics-val-style numbers "
                        "(also decodes with multi-label NMS, as Ultralytics val does)")
    e.add_argument("--backend", choices=["faster-coco-eval", "pycocotools"], default="faster-coco-eval")
    e.add_argument("--out", type=Path, help="output folder (default: reports/<timestamp>)")
    e.add_argument("--no-cache", action="store_true", help="ignore cached predictions and run inference")
    e.add_argument("--cache-dir", type=Path, help="prediction cache (default: ~/.cache/qharness)")
    r = p.add_argument_group("execution")
    r.add_argument("--workers", type=int, default=2, help="image-decoding threads running ahead (default 2)")
    r.add_argument("--threads", type=int, help="inference threads per model (default: runtime's choice)")
    return p


def _fresh_dir(base: Path) -> Path:
    """The default output folder never reuses an earlier run's folder."""
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from validator.run import ModelSpec, Settings, validate

    specs = []
    if args.float_model:
        specs.append(ModelSpec(args.float_model, "float"))
    specs += [ModelSpec(p, "int8") for p in args.int8_models]
    specs += [ModelSpec(p, "auto") for p in args.models]  # role read from its tensors once opened
    if not specs:
        parser.error("give at least one model: --float, --int8 or --model")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if not 0 <= args.conf < 1 or not 0 < args.iou <= 1 or args.max_det < 1:
        parser.error("need 0 <= --conf < 1, 0 < --iou <= 1, --max-det >= 1")
    settings = Settings(conf=args.conf, iou=args.iou, max_det=args.max_det, agnostic=args.agnostic,
                        resize=args.resize, boxes=args.boxes, task=args.task, metric=args.metric,
                        backend=args.backend, limit=args.limit, names=args.names,
                        multi_label=args.metric == "compat", clip_boxes=args.metric != "compat")
    out = args.out or _fresh_dir(Path("reports") / time.strftime("%Y%m%d-%H%M%S"))
    try:
        outcome = validate(specs, args.data, args.images, out, settings, workers=args.workers,
                           threads=args.threads, use_cache=not args.no_cache, cache_dir=args.cache_dir,
                           skip_missing=args.skip_missing)
    except InputError as e:
        print(f"validate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("validate: interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(outcome.table_md)
    ds = outcome.summary["dataset"]
    extra = f", {ds['missing_images']} missing images skipped" if ds["missing_images"] else ""
    print(f"\n{ds['images']} images{extra}. Outputs in {outcome.out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
