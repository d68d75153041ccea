"""The inference loop: every image decoded once, each model run on it, detections mapped back and written.

Every image is decoded once and letterboxed once per distinct model input geometry; all models see the
same canvases, and models with the same input tensor and transform share one input. Decoding runs ahead
in a small thread pool (PIL and numpy release the GIL) while the models run. Detections are mapped to the
annotation's frame: the decoded image normally, but when the JSON's width/height disagree with the
decoded picture the boxes and masks are rescaled to the JSON's frame (where the ground truth lives) and
the image is counted in ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from validator.data.coco import Dataset
from validator.data.preprocess import InputMaker, Resample, ResizeMode, letterbox, load_image
from validator.decode import decode
from validator.decode.contract import BoxUnits, resolve_box_units
from validator.decode.geometry import boxes_to_original
from validator.decode.masks import masks_to_rles, proto_grid_rles
from validator.errors import InputError
from validator.progress import Progress
from validator.sources import Source


def _prepared(ds: Dataset, geometries: list[tuple[int, int]], mode: ResizeMode, resample: Resample,
              workers: int) -> Iterator:
    """Yield (record, decoded_hw, {input_hw: (canvas, letterbox)}, seconds) in dataset order.

    With workers > 1 decoding runs ahead in a thread pool; at most 2 * workers images are held.
    """

    def prep(rec):
        t0 = time.perf_counter()
        img = load_image(rec.path, (rec.height, rec.width))
        canv = {hw: letterbox(img, hw, mode, resample) for hw in geometries}
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


def result_dicts(src: Source, image_id: int, boxes: np.ndarray, scores, classes, rles, proto_rles=None) -> list[dict]:
    """COCO results dicts of one image (bbox rounded to 0.01 px, score to 1e-5): what is written and scored.

    Detections of model classes without a dataset category are dropped and counted on the source.
    """
    out = []
    cats = src.class_map.category_of
    for k in range(len(scores)):
        cid = cats.get(int(classes[k]))
        if cid is None:
            if src.class_map.by_name or 0 <= int(classes[k]) < src.contract.num_classes:
                src.dropped_detections += 1
                continue
            raise InputError(f"{src.path}: model predicted class index {int(classes[k])} but only "
                             f"{len(cats)} classes map to dataset categories; give the model's class names "
                             "with --names")
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        d = {"image_id": image_id, "category_id": int(cid),
             "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
             "score": round(float(scores[k]), 5)}
        if rles is not None:
            d["segmentation"] = rles[k]
        if proto_rles is not None:  # --metric edgefirst: the mask on the prototype grid, as EdgeFirst scores it
            d["segmentation_proto"] = proto_rles[k]
        out.append(d)
    return out


def _input_key(s: Source) -> tuple:
    """Models whose inputs are filled alike share one input per image (tensor names aside)."""
    i = s.runner.input
    return i.shape, i.dtype, i.layout, i.scale, i.zero_point, s.transform


def _postprocess(s: Source, rec, frame_hw, spec, lb, outs: dict, settings, writer) -> None:
    """One model's outputs on one image -> detections on the annotation's frame -> its results file."""
    t0 = time.perf_counter()
    for name, arr in outs.items():
        if not np.isfinite(arr).all():
            s.nonfinite[name] = s.nonfinite.get(name, 0) + 1
            outs[name] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    if s.box_units in (None, BoxUnits.AUTO.value):  # END2END may need an image with detections
        s.box_units = BoxUnits(resolve_box_units(s.contract, outs, spec.hw)).value
    det = decode(s.contract, outs, spec.hw, conf=settings.conf, iou=settings.iou, max_det=settings.max_det,
                 agnostic=settings.agnostic, box_units=s.box_units, multi_label=settings.multi_label)
    boxes = boxes_to_original(det.boxes, lb, frame_hw, clip=settings.clip_boxes)
    rles = proto = None
    if s.has_masks and det.coefs is not None and det.protos is not None:
        rles = masks_to_rles(det.protos, det.coefs, det.boxes, lb, frame_hw)
        if settings.proto_masks:
            proto = proto_grid_rles(det.protos, det.coefs, det.boxes, spec.hw)
    writer.add(result_dicts(s, rec.id, boxes, det.scores, det.classes, rles, proto))
    s.timing["postprocess_s"] += time.perf_counter() - t0


POSTPROCESS_AHEAD = 3  # images whose outputs may wait for postprocessing (bounds the memory it holds)


def _check_finite(todo: list[Source], n_images: int) -> None:
    """NaN/Inf in a model's outputs (counted per output while the loop ran) is that model's input error."""
    for s in todo:
        bad = {k: v for k, v in s.nonfinite.items() if v}
        if bad:
            parts = ", ".join(f"'{k}' in {v} of {n_images} images" for k, v in sorted(bad.items()))
            raise InputError(f"{s.path}: NaN/Inf in model outputs: {parts}")


def run_models(sources: list[Source], ds: Dataset, settings, workers: int, writers: dict, *,
               quiet: bool = False, check_finite: bool = True) -> None:
    """Run every model source without cached predictions over every image; each image's results go to the
    source's writer (``writers[name]``, a :class:`validator.predictions.PredictionWriter`) as they come.

    Four stages overlap: images are decoded and letterboxed ahead in a thread pool; the models run side
    by side, one task per model and image in a pool of up to one thread per core (each image's models
    finish before the next image's start, so a model never runs twice at once); their outputs are
    decoded (NMS, masks, results) in one postprocessing thread, in image order per model, so results are
    those of a sequential run. The runtimes and most numpy work release the GIL. Why side by side: on
    these small inputs a runtime gains little from a second intra-op thread (det pair on 2 cores,
    benchmarks: 6.9 s sequential with the runtimes' default threads, 4.2 s with one thread per model run
    in parallel), so ``open_sources`` gives each model :func:`validator.sources.threads_per_model`.
    """
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    todo = [s for s in sources if s.kind == "model" and not s.cached]
    if not todo:
        return
    mode = ResizeMode(settings.resize)
    geometries = sorted({s.runner.input.hw for s in todo})
    makers: dict = {}
    for s in todo:
        key = _input_key(s)
        if key not in makers:
            makers[key] = InputMaker(s.runner.input, s.transform)
        s.timing = {"preprocess_s": 0.0, "inference_s": 0.0, "postprocess_s": 0.0, "images": 0}

    def infer(s: Source, x) -> tuple[dict, float]:
        t0 = time.perf_counter()
        outs = s.runner.run(x)
        return outs, time.perf_counter() - t0

    lanes = max(1, min(len(todo), os.cpu_count() or 1))
    wall0 = time.perf_counter()
    with Progress(len(ds.images), "validate", "images", quiet=quiet) as progress, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="postprocess") as post, \
            ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="model") as pool:
        pending: deque = deque()
        images = _prepared(ds, geometries, mode, Resample(settings.resample), workers)
        for rec, decoded_hw, canvases, decode_s in images:
            frame_hw = (rec.height, rec.width)
            mismatch = tuple(decoded_hw) != frame_hw  # counted for the summary by data.coco.size_mismatches
            inputs: dict = {}
            jobs = []
            for s in todo:
                spec = s.runner.input
                t0 = time.perf_counter()
                canvas, lb = canvases[spec.hw]
                if mismatch:
                    lb = lb.rescaled(decoded_hw, frame_hw)
                key = _input_key(s)
                if key not in inputs:
                    inputs[key] = makers[key](canvas)
                s.timing["preprocess_s"] += decode_s + (time.perf_counter() - t0)
                jobs.append((s, spec, lb, pool.submit(infer, s, inputs[key])))
            for s, spec, lb, fut in jobs:  # in source order: each model's results stay in image order
                outs, dt = fut.result()
                pending.append(post.submit(_postprocess, s, rec, frame_hw, spec, lb, outs, settings, writers[s.name]))
                s.timing["inference_s"] += dt
                s.timing["images"] += 1
            while len(pending) > POSTPROCESS_AHEAD * len(todo):
                pending.popleft().result()  # re-raises a postprocessing error here
            progress.update()
        while pending:
            pending.popleft().result()
    wall = time.perf_counter() - wall0
    for s in todo:
        s.timing["loop_wall_s"] = wall
    if check_finite:
        _check_finite(todo, len(ds.images))


check_finite = _check_finite  # validator.distributed checks the merged counts of every shard
