"""Benchmarks, measured side by side in one run and printed as ratios (machines here are noisy, so
absolute times mean little; ratios of things run back to back mean more). Results are kept as JSON per
platform in benchmarks/results/.

1. validate wall time vs bare inference: the same models over the same images, where "bare" is the
   least a hand-written script must do (decode image, letterbox, run the model). Target <= 1.10.
2. COCO backend: faster-coco-eval vs pycocotools on the same predictions; stats must be identical.
   Target >= 8x.
3. cached re-validation (predictions cached, metrics recomputed) wall time.
4. NMS vs the textbook greedy loop in numpy (take the best box, drop what overlaps it, repeat) on the
   8400 grid-anchored candidates of a 640x640 YOLO head (80 classes, IoU 0.7, 300 kept); the kept
   indices must be identical. Ratio = ours / textbook, from the min and from the median of
   interleaved repeats.
5. instance masks (100 detections, 32 prototypes 160x160, 640x480 image) vs the straightforward way:
   every prototype resampled to the image (PIL bilinear), coefs @ protos, sigmoid, crop to the box,
   threshold, RLE-encode; the pixel agreement is reported. Ratio as in 4.

Usage: python benchmarks/run.py [--images N] [--repeat R] [--micro-repeat M] [--only NAME ...]

With --only, the entries not run keep their previous values in the results file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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


def paired_timings(ours, baseline, repeat: int) -> tuple[list[float], list[float]]:
    """Times of ``ours()`` and ``baseline()`` run back to back ``repeat`` times (order alternating), after
    one untimed warm-up call of each."""
    ours(), baseline()
    t_ours, t_base = [], []
    for i in range(repeat):
        for fn, acc in ((ours, t_ours), (baseline, t_base))[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return t_ours, t_base


def ratio_entry(t_ours: list[float], t_base: list[float]) -> dict:
    mo, mb = statistics.median(t_ours), statistics.median(t_base)
    return {"ours_min_s": min(t_ours), "ours_median_s": mo, "baseline_min_s": min(t_base),
            "baseline_median_s": mb, "ratio_min": min(t_ours) / min(t_base), "ratio_median": mo / mb,
            "repeat": len(t_ours)}


def nms_candidates() -> tuple:
    """Grid-anchored candidates like a 640x640 YOLO head (strides 8, 16, 32: 8400 boxes), 80 classes."""
    import numpy as np

    rng = np.random.default_rng(0)
    pts = []
    for s in (8, 16, 32):
        g = (np.arange(640 // s) + 0.5) * s
        gx, gy = np.meshgrid(g, g)
        pts.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], 1))
    p = np.concatenate(pts)
    wh = p[:, 2:3] * rng.uniform(1, 6, (len(p), 2))
    boxes = np.concatenate([p[:, :2] - wh / 2, p[:, :2] + wh / 2], 1).astype(np.float32)
    return boxes, rng.random(len(p)).astype(np.float32), rng.integers(0, 80, len(p))


def textbook_nms(boxes, scores, iou_threshold: float, classes, max_det: int = 300):
    """What one writes by hand: take the best remaining box, drop the remaining boxes of its class whose
    IoU with it exceeds the threshold, repeat. Ties in score keep input order."""
    import numpy as np

    b = boxes.astype(np.float64)
    x1, y1, x2, y2 = b.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    keep = []
    while order.size and len(keep) < max_det:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        order = rest[~((iou > iou_threshold) & (classes[rest] == classes[i]))]
    return np.array(keep, dtype=np.intp)


def bench_nms(repeat: int) -> dict:
    from validator.decode.nms import nms

    boxes, scores, classes = nms_candidates()
    ours = nms(boxes, scores, 0.7, classes)
    base = textbook_nms(boxes, scores, 0.7, classes)
    t_ours, t_base = paired_timings(lambda: nms(boxes, scores, 0.7, classes),
                                    lambda: textbook_nms(boxes, scores, 0.7, classes), repeat)
    return {"case": f"{len(boxes)} grid-anchored candidates, 80 classes, IoU 0.7, max_det 300",
            "baseline": "textbook greedy loop (numpy)", **ratio_entry(t_ours, t_base), "kept": len(ours),
            "identical_keep": ours.tolist() == base.tolist()}


def mask_inputs() -> tuple:
    """100 detections with 32 prototypes (160x160) of a 640x640 canvas letterboxing a 640x480 image."""
    import numpy as np

    from validator.decode.geometry import Letterbox

    rng = np.random.default_rng(0)
    lb = Letterbox.fit((480, 640), (640, 640))
    protos = rng.normal(size=(32, 160, 160)).astype(np.float32)
    coefs = rng.normal(size=(100, 32)).astype(np.float32)
    xy = rng.uniform(0, 640, (100, 2))
    wh = rng.uniform(10, 200, (100, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    return protos, coefs, boxes, lb, (480, 640)


def straightforward_masks(protos, coefs, boxes_input, lb, hw):
    """Every prototype resampled to the original image (PIL bilinear over the letterbox content, half-pixel
    centres), then sigmoid(coefs @ protos), cropped to the pixels whose centre is inside the box (mapped to
    the image), thresholded at 0.5. Returns the (n, h, w) bool masks and their COCO RLEs."""
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    nm, ph, pw = protos.shape
    h, w = hw
    cell_y, cell_x = lb.input_hw[0] / ph, lb.input_hw[1] / pw
    box = (lb.pad_x / cell_x, lb.pad_y / cell_y, (lb.pad_x + w * lb.scale_x) / cell_x,
           (lb.pad_y + h * lb.scale_y) / cell_y)  # the letterbox content, in proto cells
    full = np.stack([np.asarray(Image.fromarray(p, mode="F").resize((w, h), Image.BILINEAR, box=box))
                     for p in protos])  # (nm, h, w)
    with np.errstate(over="ignore"):
        prob = 1 / (1 + np.exp(-(coefs @ full.reshape(nm, -1)))).reshape(-1, h, w)
    b = boxes_input.astype(np.float64)
    x1 = np.clip((b[:, 0] - lb.pad_x) / lb.scale_x, 0, w)[:, None]
    x2 = np.clip((b[:, 2] - lb.pad_x) / lb.scale_x, 0, w)[:, None]
    y1 = np.clip((b[:, 1] - lb.pad_y) / lb.scale_y, 0, h)[:, None]
    y2 = np.clip((b[:, 3] - lb.pad_y) / lb.scale_y, 0, h)[:, None]
    cx, cy = np.arange(w) + 0.5, np.arange(h) + 0.5
    inside = ((cy >= y1) & (cy < y2))[:, :, None] & ((cx >= x1) & (cx < x2))[:, None, :]
    masks = (prob > 0.5) & inside
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return masks, rles


def bench_masks(repeat: int) -> dict:
    import numpy as np
    from pycocotools import mask as mask_utils

    from validator.decode.masks import masks_to_rles

    args = mask_inputs()
    ours = np.array([mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()})
                     for r in masks_to_rles(*args)]).astype(bool)
    base, _ = straightforward_masks(*args)
    either = ours | base
    t_ours, t_base = paired_timings(lambda: masks_to_rles(*args), lambda: straightforward_masks(*args), repeat)
    return {"case": f"{len(args[1])} detections, {args[0].shape[0]} protos {args[0].shape[1]}x{args[0].shape[2]}, "
                    f"{args[4][1]}x{args[4][0]} image",
            "baseline": "PIL bilinear of all protos, coefs @ protos, sigmoid, crop, threshold, RLE",
            **ratio_entry(t_ours, t_base),
            "pixel_agreement": float((ours == base).mean()),
            "agreement_on_mask_pixels": float((ours == base)[either].mean()) if either.any() else 1.0,
            "pixels_differing": int((ours != base).sum()),
            "masks_identical": int((ours == base).all(axis=(1, 2)).sum()), "masks": len(ours)}


BENCHMARKS = ("validate", "cached", "coco", "nms", "masks")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2, help="repeats; the best of each is kept")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--micro-repeat", type=int, default=20,
                    help="repeats of the nms and masks entries (min and median are reported)")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                    help=f"run only these benchmarks, of: {' '.join(BENCHMARKS)} (default: all)")
    args = ap.parse_args()
    only = set(args.only or BENCHMARKS)

    out = ROOT / "benchmarks" / "results" / f"{platform.system()}-{platform.machine()}.json"
    results: dict = json.loads(out.read_text()) if args.only and out.exists() else {}
    results.update({"platform": f"{platform.system()}-{platform.machine()}", "python": platform.python_version()})

    if only & {"validate", "cached", "coco"}:
        validation_benchmarks(args, only, results)
    if "nms" in only:
        results["nms_vs_textbook"] = bench_nms(args.micro_repeat)
    if "masks" in only:
        results["masks_vs_straightforward"] = bench_masks(args.micro_repeat)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if "validate" in only:
        v = results["validate_vs_bare"]
        print(f"validate / bare inference : {v['ratio']:.3f}  ({v['validate_s']:.2f} s vs {v['bare_s']:.2f} s, "
              f"{args.images} images, 2 models; target <= {v['target']})")
    if "cached" in only:
        c = results["cached_revalidation"]
        print(f"cached / first validation : {c['ratio']:.3f}  ({c['cached_s']:.2f} s vs {c['first_s']:.2f} s)")
    if "coco" in only:
        b = results["coco_backend"]
        print(f"pycocotools / faster-coco : {b['speedup']:.1f}x  (identical stats: {b['identical_stats']}; "
              f"target >= {b['target']}x)")
    ok = True
    if "nms" in only:
        n = results["nms_vs_textbook"]
        print(f"nms / textbook loop       : {n['ratio_min']:.3f} min, {n['ratio_median']:.3f} median  "
              f"({n['ours_min_s'] * 1e3:.1f} vs {n['baseline_min_s'] * 1e3:.1f} ms min, "
              f"{n['ours_median_s'] * 1e3:.1f} vs {n['baseline_median_s'] * 1e3:.1f} ms median, "
              f"{n['repeat']} repeats; {n['case']}; identical kept indices: {n['identical_keep']})")
        ok &= n["identical_keep"]
    if "masks" in only:
        m = results["masks_vs_straightforward"]
        print(f"masks / straightforward   : {m['ratio_min']:.3f} min, {m['ratio_median']:.3f} median  "
              f"({m['ours_min_s'] * 1e3:.1f} vs {m['baseline_min_s'] * 1e3:.1f} ms min, "
              f"{m['ours_median_s'] * 1e3:.1f} vs {m['baseline_median_s'] * 1e3:.1f} ms median, "
              f"{m['repeat']} repeats; {m['case']})")
        print(f"  pixel agreement {m['pixel_agreement']:.6%} ({m['pixels_differing']} pixels differ; "
              f"{m['agreement_on_mask_pixels']:.4%} of the pixels set in either), "
              f"{m['masks_identical']}/{m['masks']} masks identical")
    print(f"written {out.relative_to(ROOT)}")
    if not ok:
        print("error: nms kept different indices than the textbook loop", file=sys.stderr)
    return 0 if ok else 1


def validation_benchmarks(args: argparse.Namespace, only: set[str], results: dict) -> None:
    """Entries 1-3: validate vs bare inference, cached re-validation, COCO backends."""
    from validator.data.coco import load_dataset
    from validator.datasets.shapes import ShapesConfig, generate
    from validator.metrics import cocoeval
    from validator.run import ModelSpec, Settings, validate

    data = ROOT / "datasets" / f"shapes-bench-{args.images}"
    if not (data / "annotations.json").exists():
        generate(data, ShapesConfig(images=args.images, seed=3))
    ds = load_dataset(data)
    det = [MODELS / "shapes-det.onnx", MODELS / "shapes-det.int8.tflite"]
    results["images"] = args.images

    # 1. validate vs bare inference, best of N each, interleaved (run once, untimed, when only the COCO
    # backends need its predictions)
    bare, wall = [], []
    preds = None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat if "validate" in only else int("coco" in only)):
            if "validate" in only:
                bare.append(bare_inference(det, ds, args.threads))
            t0 = time.perf_counter()
            validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / f"o{i}",
                     Settings(), workers=2, threads=args.threads, use_cache=False)
            wall.append(time.perf_counter() - t0)
        if "validate" in only:
            results["validate_vs_bare"] = {"bare_s": min(bare), "validate_s": min(wall),
                                           "ratio": min(wall) / min(bare), "target": 1.10}
        # 3. cached re-validation
        if "cached" in only:
            t0 = time.perf_counter()
            validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / "cached",
                     Settings(), workers=2, threads=args.threads, use_cache=True, cache_dir=Path(tmp) / "cache")
            t_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            validate([ModelSpec(det[0], "float"), ModelSpec(det[1], "int8")], data, None, Path(tmp) / "cached2",
                     Settings(), workers=2, threads=args.threads, use_cache=True, cache_dir=Path(tmp) / "cache")
            t_cached = time.perf_counter() - t0
            results["cached_revalidation"] = {"first_s": t_first, "cached_s": t_cached, "ratio": t_cached / t_first}
        if "coco" in only:
            preds = json.loads((Path(tmp) / "o0" / "predictions" / "shapes-det.json").read_text())

    # 2. backends on the same predictions
    if "coco" in only:
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
                                   # as summary.json stores them: the backends may differ in the last ulp
                                   # (pycocotools adds np.spacing(1) to a denominator)
                                   "identical_stats": _stored(stats["faster-coco-eval"])
                                   == _stored(stats["pycocotools"]),
                                   "target": 8.0}


def _stored(stats: dict) -> dict:
    from validator.run import _r

    return {k: _r(v) for k, v in stats.items()}


if __name__ == "__main__":
    sys.exit(main())
