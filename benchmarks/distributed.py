"""validate --ray against a local run on this machine, and a projection of the nightly sweep.

Case: the det fixture pair on N shapes images, no cache. ``local`` is ``validate`` as it runs on one machine
(both models side by side, one thread each); ``ray-1`` the same run on one Ray actor (the same two lanes:
equal parallelism, so the ratio is Ray's own overhead: actor start, shipping detections back; target <= 1.10);
``ray-2`` two actors on the same 2 cores (oversubscribed here: a second machine is what it is for).
Alternating, min and median. Ray is started once, outside the timings (a cluster is up before a nightly job).

Projection: from the ray-1 run's per-shard times (actor-side), seconds per image and model, scaled to COCO
val2017 at this fixture's 256 px (5000 images) x the quantizer's default sweep (32 variants + the float
model) for N workers of this machine's speed: ``5000 x 33 x s / N``. A 640-px model costs ~6x a 256-px one
per image (pixels); the projection says so rather than guessing a factor into it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pipeline import pair, shapes_data
from timing import ratio_entry, side_by_side


def bench_ray(task: str, images: int, repeat: int) -> dict:
    import ray

    from validator.cli import main

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    data = shapes_data(images)
    models = pair(task)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    runs = {"n": 0}

    def run(*extra):
        def fn():
            runs["n"] += 1
            out = tmp / f"o{runs['n']}"
            code = main(["--float", str(models[0]), "--int8", str(models[1]), "--data", str(data), "--out", str(out),
                         "--quiet", "--no-cache", "--threads", "1", *extra])
            assert code == 0
            return out
        return fn

    try:
        local, ray1, ray2 = run(), run("--ray", "--ray-workers", "1"), run("--ray", "--ray-workers", "2")
        t_local, t_ray1, t_ray2 = side_by_side([local, ray1, ray2], repeat)
        last = ray1()
        ex = json.loads((last / "timing.json").read_text())["execution"]["ray"]
    finally:
        if started:
            ray.shutdown()
    per_image_model = sum(ex["shard_seconds"]) / (images * len(models))
    sweep = 5000 * 33
    return {"case": f"{task} pair, {images} images, --ray-shard 64, no cache", "target": 1.10,
            "ray1_vs_local": ratio_entry(t_ray1, t_local), "ray2_vs_local": ratio_entry(t_ray2, t_local),
            "per_image_model_s": per_image_model,
            "projection": {"images": 5000, "models": 33, "input_px": 256,
                           "hours_by_workers": {str(n): round(sweep * per_image_model / n / 3600, 3)
                                                for n in (1, 2, 4, 8, 16, 32)}}}
