"""Calibration memory and time of `quantize`, side by side with an all-in-memory calibration, and quantize
time per variant. Results as JSON in benchmarks/results/quantize-<platform>.json. Run by `nox -s bench-quantize`.

* calibration (fresh process per case, peak RSS from the process itself): our streamed two-pass statistics
  (``quantizer.calibration.statistics``, no cache) vs ai-edge-quantizer's own ``calibrate()`` given the same
  preprocessed samples as a list (how its API is fed when not chunked: every sample in RAM), at 50, 200 and
  500 samples, on the det fixture at 256 px (``shapes-det.split.float32.tflite``) and at 640 px
  (``shapes-det-640.split.float32.tflite``). Targets: ours at 500 within 15 % of ours at 50; ours under
  1 GB at 640 px / 500 samples.
* variants: seconds to make one TFLite variant from ready statistics (ranges + ai-edge-quantizer), per
  strategy, and one ONNX QDQ variant (onnxruntime quantize_static with our ranges).

Usage: python benchmarks/quantize.py [--samples 50,200,500] [--sizes 256,640] [--no-baseline] [--quick]
Calibration images: a shapes dataset (seed 11) generated under datasets/bench-calib on first use.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "tests" / "fixtures" / "models"
FLOAT = {256: MODELS / "shapes-det.split.float32.tflite", 640: MODELS / "shapes-det-640.split.float32.tflite"}
CALIB = ROOT / "datasets" / "bench-calib"
TARGET_FLAT = 1.15
TARGET_640_MB = 1024


# ------------------------------------------------------------------------------------------ child processes
def _source(model: Path, n: int):
    from quantizer.calibration import SampleSource, calibration_images
    from validator.data.preprocess import choose_transform
    from validator.runners import open_runner

    r = open_runner(model)
    images = calibration_images(CALIB)
    return SampleSource(images, r.input, choose_transform(r.input, r.metadata.get("normalization")))


def child(kind: str, model: Path, n: int) -> dict:
    """One measurement in this (fresh) process; prints JSON."""
    from quantizer.common import peak_rss_mb

    base = peak_rss_mb()
    src = _source(model, n)
    t0 = time.monotonic()
    if kind == "streamed":
        from quantizer.calibration import StatsCache, TFLiteTap, statistics

        stats, _ = statistics(TFLiteTap(model), src, [n], model_sha256="bench", cache=StatsCache(None))
        tensors = len(stats[n].names)
    else:  # ai-edge-quantizer's own calibrate() on a list of samples (its default EMA min/max)
        from quantizer import emit_tflite

        data = model.read_bytes()
        key, name, _ = emit_tflite.signature(data)
        samples = [{name: x.copy()} for _, x in src(0, n)]
        from ai_edge_quantizer import quantizer

        with emit_tflite._quiet():
            q = quantizer.Quantizer(bytearray(emit_tflite.strip_appended(data)),
                                    emit_tflite.load_recipe("static_int8"))
            tensors = len(q.calibrate({key: samples}, num_threads=2))
    seconds = time.monotonic() - t0
    return {"kind": kind, "samples": n, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "baseline_rss_mb": round(base, 1), "tensors": tensors}


def variant_times(model: Path, n: int) -> dict:
    """Seconds per variant from ready statistics (measured in this process)."""
    import onnx

    from quantizer import emit_onnx, emit_tflite, layout
    from quantizer.calibration import OnnxTap, SampleSource, StatsCache, TFLiteTap, statistics
    from quantizer.strategies import parse_strategy, ranges

    src = _source(model, n)
    stats, _ = statistics(TFLiteTap(model), src, [n], model_sha256="bench", cache=StatsCache(None))
    data = model.read_bytes()
    recipe = emit_tflite.load_recipe("static_int8")
    emit_tflite.quantize_static(data, ranges(parse_strategy("minmax"), stats[n].tensors()), recipe, (0, 1))  # warm
    out = {}
    for spec in ("minmax", "percentile:99.99", "entropy", "mse"):
        t0 = time.monotonic()
        rng = ranges(parse_strategy(spec), stats[n].tensors())
        t1 = time.monotonic()
        emit_tflite.quantize_static(data, rng, recipe, (0.0, 1.0))
        out[f"tflite {spec}"] = {"ranges_s": round(t1 - t0, 2), "emit_s": round(time.monotonic() - t1, 2)}
    parent = layout.apply(onnx.load(str(MODELS / "shapes-det.onnx")), "split")
    from validator.tensors import InputSpec

    spec_in = InputSpec("images", (1, 3, 256, 256), "float32", "NCHW", (256, 256))
    osrc = SampleSource(src.images, spec_in, src.transform)
    ostats, _ = statistics(OnnxTap(parent), osrc, [n], model_sha256="bench-onnx", cache=StatsCache(None))
    rng = ranges(parse_strategy("minmax"), ostats[n].tensors())
    t0 = time.monotonic()
    emit_onnx.quantize_static(parent, rng, "channel", (0.0, 1.0))
    out["onnx qdq minmax"] = {"ranges_s": 0.0, "emit_s": round(time.monotonic() - t0, 2)}
    return out


# ------------------------------------------------------------------------------------------ driver
def _run_child(*args) -> dict:
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def ensure_calib(n: int) -> None:
    ann = CALIB / "annotations.json"
    if ann.is_file() and len(json.loads(ann.read_text())["images"]) >= n:
        return
    from validator.datasets.shapes import ShapesConfig, generate

    generate(CALIB, ShapesConfig(images=n, seed=11))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="50,200,500")
    p.add_argument("--sizes", default="256,640")
    p.add_argument("--no-baseline", action="store_true", help="skip the all-in-memory calibration")
    p.add_argument("--quick", action="store_true", help="10,20 samples at 256 px (a smoke run)")
    p.add_argument("--child", nargs=3, metavar=("KIND", "MODEL", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, model, n = args.child
        print(json.dumps(child(kind, Path(model), int(n))))
        return 0
    samples = [10, 20] if args.quick else [int(v) for v in args.samples.split(",")]
    sizes = [256] if args.quick else [int(v) for v in args.sizes.split(",")]
    ensure_calib(max(samples))
    results: dict = {"platform": f"{platform.system()}-{platform.machine()}", "python": platform.python_version(),
                     "calibration": {}, "variants": None}
    for size in sizes:
        rows = []
        for n in samples:
            for kind in ("streamed",) + (() if args.no_baseline else ("aeq-list",)):
                r = _run_child(kind, FLOAT[size], n)
                rows.append(r)
                print(f"{size} px, {n:>4} samples, {kind:<8}: peak RSS {r['peak_rss_mb']:7.0f} MB "
                      f"(imports {r['baseline_rss_mb']:.0f}), {r['seconds']:6.1f} s", flush=True)
        results["calibration"][str(size)] = rows
    verdict = []
    for size, rows in results["calibration"].items():
        ours = {r["samples"]: r for r in rows if r["kind"] == "streamed"}
        lo, hi = min(ours), max(ours)
        flat = ours[hi]["peak_rss_mb"] / ours[lo]["peak_rss_mb"]
        line = f"{size} px: streamed peak RSS {hi} / {lo} samples = {flat:.3f} (target <= {TARGET_FLAT})"
        theirs = {r["samples"]: r for r in rows if r["kind"] == "aeq-list"}
        if theirs:
            line += (f"; all-in-memory at {hi}: {theirs[hi]['peak_rss_mb']:.0f} MB vs ours "
                     f"{ours[hi]['peak_rss_mb']:.0f} MB ({theirs[hi]['peak_rss_mb'] / ours[hi]['peak_rss_mb']:.1f}x)")
        if size == "640":
            line += f"; under {TARGET_640_MB} MB: {ours[hi]['peak_rss_mb'] < TARGET_640_MB}"
        verdict.append({"size": size, "flat_ratio": round(flat, 3), "ok": flat <= TARGET_FLAT and (
            size != "640" or ours[hi]["peak_rss_mb"] < TARGET_640_MB)})
        print(line)
    results["verdict"] = verdict
    vt = variant_times(FLOAT[256], min(200, max(samples)))
    results["variants"] = vt
    for k, v in vt.items():
        print(f"variant {k:<26}: ranges {v['ranges_s']:.2f} s + emit {v['emit_s']:.2f} s")
    if not args.quick:
        out = HERE / "results" / f"quantize-{results['platform']}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results in {out.relative_to(ROOT)}")
    return 0 if all(v["ok"] for v in verdict) else 1


if __name__ == "__main__":
    sys.exit(main())
