"""COCO evaluation at COCO's scale: our metrics entry point vs pycocotools as one uses it by hand.

Case: 5000 images, ~35k ground-truth objects (1 % crowds), 80 categories, 500k detections
(``coco_data.make_case``; RLE masks on every detection for ``segm``). Each side starts from the same
files on disk: the annotation JSON and a results JSON.

* ours: what ``validate`` does after inference: read the results file, ``metrics.cocoeval.evaluate`` with
  the faster-coco-eval backend (12 stats, per-class AP, Mean Recall at the F1 optimum).
* pycocotools (baseline): ``COCO(gt)``, ``loadRes(results)``, ``COCOeval`` evaluate / accumulate /
  summarize: the 12 stats only.
* faster-coco-eval alone (reference): the same four calls with its ``COCOeval_faster``.

Timed alternately in one process; min and median. The 12 stats must be identical to pycocotools' (as
summary.json stores them, 12 decimals: the backends may differ in the last ulp). Target: >= 8x bbox,
>= 4x segm.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
from pathlib import Path

from coco_data import make_case

ROOT = Path(__file__).resolve().parents[1]


def case_files(iou_type: str, images: int) -> tuple[Path, Path]:
    root = ROOT / "datasets" / "bench"
    tag = f"coco-case-{images}{'-segm' if iou_type == 'segm' else ''}"
    gt_path, dt_path = root / f"{tag}-gt.json", root / f"{tag}-dt.json"
    if not (gt_path.exists() and dt_path.exists()):
        gt, dets = make_case(images, masks=iou_type == "segm")
        root.mkdir(parents=True, exist_ok=True)
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text("[" + ",\n".join(json.dumps(d, separators=(",", ":")) for d in dets) + "]\n")
    return gt_path, dt_path


def ours(gt: dict, dt_path: Path, iou_type: str) -> dict:
    from validator.metrics import cocoeval
    from validator.predictions import read_predictions

    return cocoeval.evaluate(gt, read_predictions(dt_path), iou_type, backend="faster-coco-eval", owned=True).stats


def plain_pycocotools(gt_path: Path, dt_path: Path, iou_type: str) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(dt_path)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


def plain_faster(gt_path: Path, dt_path: Path, iou_type: str) -> list[float]:
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(str(gt_path), print_function=lambda *a, **k: None)
    ev = COCOeval_faster(gt, gt.loadRes(str(dt_path)), iou_type, print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return list(ev.stats)


def bench_coco(iou_type: str, images: int, repeat: int) -> dict:
    from validator.metrics.cocoeval import STAT_NAMES
    from validator.run import _r

    gt_path, dt_path = case_files(iou_type, images)
    gt = json.loads(gt_path.read_text())
    times: dict[str, list[float]] = {"ours": [], "pycocotools": [], "faster": []}
    stats = {}
    runs = {"ours": lambda: ours(gt, dt_path, iou_type),
            "pycocotools": lambda: plain_pycocotools(gt_path, dt_path, iou_type),
            "faster": lambda: plain_faster(gt_path, dt_path, iou_type)}
    for i in range(repeat):
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            stats[name] = runs[name]()
            times[name].append(time.perf_counter() - t0)
    ref = [_r(None if v == -1 else v) for v in stats["pycocotools"]]
    got = [_r(stats["ours"][k]) for k in STAT_NAMES]
    n_dt = sum(1 for _ in open(dt_path))
    gt_doc = gt
    summary = {k: {"min_s": min(v), "median_s": statistics.median(v)} for k, v in times.items()}
    return {"case": f"{iou_type}: {images} images, {len(gt_doc['annotations'])} GT "
                    f"({sum(a['iscrowd'] for a in gt_doc['annotations'])} crowds), {n_dt} detections",
            "times": summary, "repeat": repeat,
            "speedup_min": summary["pycocotools"]["min_s"] / summary["ours"]["min_s"],
            "speedup_median": summary["pycocotools"]["median_s"] / summary["ours"]["median_s"],
            "faster_alone_speedup_min": summary["pycocotools"]["min_s"] / summary["faster"]["min_s"],
            "faster_alone_speedup_median": summary["pycocotools"]["median_s"] / summary["faster"]["median_s"],
            "identical_stats": got == ref, "target": 8.0 if iou_type == "bbox" else 4.0}
