"""Benchmarks, measured side by side in one run and printed as ratios (machines here are noisy, so
absolute times mean little; ratios of things run back to back mean more). Results are kept as JSON per
platform in benchmarks/results/.

1. validate wall time vs bare inference: the same models over the same images, where "bare" is the
   least a hand-written script must do (decode image, letterbox, run the model). Target <= 1.10.
2. COCO backend: faster-coco-eval vs pycocotools on the same predictions; stats must be identical.
   Target >= 8x.
3. cached re-validation (predictions cached, metrics recomputed) wall time.

Usage: python benchmarks/run.py [--images N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "tests" / "fixtures" / "models"


def bare_inference(model_paths: list[Path], ds, threads: int | None) -> float:
    from validator.data.preprocess import letterbox, load_image, to_input
    from validator.runners import open_runner

    runners = [open_runner(p, threads) for p in model_paths]
    t0 = time.perf_counter()
    for rec in ds.images:
        img = load_image(rec.path)
        for r in runners:
            canvas, _ = letterbox(img, r.input.hw)
            r.run(to_input(canvas, r.input))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2, help="repeats; the best of each is kept")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from validator.data.coco import load_dataset
    from validator.datasets.shapes import ShapesConfig, generate
    from validator.metrics import cocoeval
    from validator.run import ModelSpec, Settings, validate

    data = ROOT / "datasets" / f"shapes-bench-{args.images}"
    if not (data / "annotations.json").exists():
        generate(data, ShapesConfig(images=args.images, seed=3))
    ds = load_dataset(data)
    det = [MODELS / "shapes-det.onnx", MODELS / "shapes-det.int8.tflite"]
    results: dict = {"platform": f"{platform.system()}-{platform.machine()}", "python": platform.python_version(),
                     "images": args.images}

    # 1. validate vs bare inference, best of N each, interleaved
    bare, wall = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            bare.append(bare_inference(det, ds, args.threads))
            t0 = time.perf_counter()
            validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / f"o{i}",
                     Settings(), workers=2, threads=args.threads, use_cache=False)
            wall.append(time.perf_counter() - t0)
        # 3. cached re-validation
        t0 = time.perf_counter()
        validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / "cached",
                 Settings(), workers=2, threads=args.threads, use_cache=True, cache_dir=Path(tmp) / "cache")
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / "cached2",
                 Settings(), workers=2, threads=args.threads, use_cache=True, cache_dir=Path(tmp) / "cache")
        t_cached = time.perf_counter() - t0
        preds = json.loads((Path(tmp) / "o0" / "predictions" / "shapes-det.json").read_text())

    results["validate_vs_bare"] = {"bare_s": min(bare), "validate_s": min(wall), "ratio": min(wall) / min(bare),
                                   "target": 1.10}
    results["cached_revalidation"] = {"first_s": t_first, "cached_s": t_cached, "ratio": t_cached / t_first}

    # 2. backends on the same predictions
    timings = {}
    stats = {}
    for backend in ("faster-coco-eval", "pycocotools"):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = cocoeval.evaluate(ds.gt, preds, "bbox", backend=backend)
            best = min(best, time.perf_counter() - t0)
        timings[backend], stats[backend] = best, res.stats
    results["coco_backend"] = {"faster_s": timings["faster-coco-eval"], "pycocotools_s": timings["pycocotools"],
                               "speedup": timings["pycocotools"] / timings["faster-coco-eval"],
                               "identical_stats": stats["faster-coco-eval"] == stats["pycocotools"], "target": 8.0}

    out = ROOT / "benchmarks" / "results" / f"{results['platform']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    v, c, b = results["validate_vs_bare"], results["cached_revalidation"], results["coco_backend"]
    print(f"validate / bare inference : {v['ratio']:.3f}  ({v['validate_s']:.2f} s vs {v['bare_s']:.2f} s, "
          f"{args.images} images, 2 models; target <= {v['target']})")
    print(f"cached / first validation : {c['ratio']:.3f}  ({c['cached_s']:.2f} s vs {c['first_s']:.2f} s)")
    print(f"pycocotools / faster-coco : {b['speedup']:.1f}x  (identical stats: {b['identical_stats']}; "
          f"target >= {b['target']}x)")
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
