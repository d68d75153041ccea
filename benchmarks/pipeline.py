"""`validate` against the inference a user would write by hand, and cached re-validation.

The baseline ("bare") is the least any validation must spend: the raw interpreters (onnxruntime
``session.run``, LiteRT ``set_tensor`` + ``invoke`` + reading the outputs) on model inputs prepared before
timing (each image decoded and letterboxed once, outside the clock). ``validate`` is timed whole, in the
same process, alternately with the baseline: dataset and model checks, hashing, decoding, letterbox,
inference, NMS, masks, results files, metrics, tables, report. Target: validate <= 1.10 x bare. A second
baseline runs the same raw calls on validate's schedule (one thread per model, models side by side): the
ratio against it is validate's own overhead, apart from the schedule.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from timing import ratio_entry, side_by_side

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fixtures" / "models"


def shapes_data(images: int, seed: int = 3) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    data = ROOT / "datasets" / f"shapes-bench-{images}"
    if not (data / "annotations.json").exists():
        generate(data, ShapesConfig(images=images, seed=seed))
    return data


def pair(task: str) -> list[Path]:
    return [MODELS / f"shapes-{task}.onnx", MODELS / f"shapes-{task}.int8.tflite"]


def bare_runner(paths: list[Path], data: Path, threads: int | None):
    """A closure running the raw interpreters over inputs prepared now (one decode per image)."""
    import numpy as np

    from validator.data.coco import load_dataset
    from validator.data.preprocess import choose_transform, letterbox, load_image, to_input
    from validator.runners import open_runner

    ds = load_dataset(data)
    runners = [open_runner(p, threads) for p in paths]
    prepared = []
    for rec in ds.images:
        img = load_image(rec.path)
        xs, cache = [], {}
        for r in runners:
            key = (r.input.shape, r.input.dtype, r.input.scale, r.input.zero_point)
            if key not in cache:
                cache[key] = to_input(letterbox(img, r.input.hw)[0], r.input, choose_transform(r.input))
            xs.append(cache[key])
        prepared.append(xs)
    calls = []
    for r in runners:
        if r.kind == "onnx":
            calls.append(lambda x, r=r: r.session.run(None, {r.input.name: x}))
        else:
            outs = [o[1] for o in r._outs]
            calls.append(lambda x, r=r, outs=outs: (r.interp.set_tensor(r._in_index, x), r.interp.invoke(),
                                                    [np.array(r.interp.get_tensor(i)) for i in outs]))

    def bare():
        for xs in prepared:
            for call, x in zip(calls, xs, strict=True):
                call(x)

    return bare, len(ds.images)


def bench_validate(task: str, images: int, repeat: int, threads: int | None) -> dict:
    from validator.run import ModelSpec, Settings, validate

    data = shapes_data(images)
    paths = pair(task)
    bare, n = bare_runner(paths, data, threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    count = iter(range(1000))

    def ours():
        validate([ModelSpec(paths[0], "float"), ModelSpec(paths[1], "int8")], data, None, tmp / f"o{next(count)}",
                 Settings(), workers=2, threads=threads, use_cache=False, quiet=True)

    # the same interpreters scheduled as validate schedules them: one model per core, side by side (here
    # free-running, no per-image barrier): what is left against it is validate's own overhead
    from validator.sources import threads_per_model

    lanes = [bare_runner([p], data, threads_per_model(len(paths)))[0] for p in paths]

    def bare_parallel():
        ts = [threading.Thread(target=f) for f in lanes[1:]]
        for t in ts:
            t.start()
        lanes[0]()
        for t in ts:
            t.join()

    t_ours, t_bare, t_par = side_by_side([ours, bare, bare_parallel], repeat)
    return {"case": f"{task} pair (float ONNX + INT8 TFLite), {n} shapes images at 256 px",
            "baseline": "raw session.run / set_tensor+invoke on inputs prepared before timing, one model after "
                        "the other, the runtimes' default threads (the loop a user writes)",
            **ratio_entry(t_ours, t_bare), "target": 1.10,
            "vs_bare_parallel": {"baseline": "the same raw calls, one thread per model, models in parallel "
                                             "threads (validate's schedule)", **ratio_entry(t_ours, t_par)}}


def bench_cached(task: str, images: int, repeat: int, threads: int | None) -> dict:
    """Re-validation when both models' predictions are cached (metrics, tables, files): wall seconds."""
    from validator.run import ModelSpec, Settings, validate

    data = shapes_data(images)
    paths = pair(task)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cached-"))
    specs = [ModelSpec(paths[0], "float"), ModelSpec(paths[1], "int8")]
    t0 = time.perf_counter()
    validate(specs, data, None, tmp / "first", Settings(), workers=2, threads=threads, cache_dir=tmp / "cache",
             quiet=True)
    first = time.perf_counter() - t0
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        validate(specs, data, None, tmp / f"again{i}", Settings(), workers=2, threads=threads,
                 cache_dir=tmp / "cache", quiet=True)
        times.append(time.perf_counter() - t0)
    return {"case": f"{task} pair, {images} shapes images, predictions cached", "first_s": first,
            "cached_min_s": min(times), "cached_median_s": sorted(times)[len(times) // 2], "repeat": repeat,
            "target_s": 10.0}
