"""Peak memory of `validate` as the dataset grows: each run in a fresh process, its own peak RSS.

Target: flat in image count (what a run holds is per image and per model, never per dataset, except the
one model's detections the metrics load at a time).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline import pair, shapes_data

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
from pathlib import Path
from validator.run import ModelSpec, Settings, validate
a = json.loads(sys.argv[1])
validate([ModelSpec(Path(a["float"]), "float"), ModelSpec(Path(a["int8"]), "int8")], Path(a["data"]), None,
         Path(a["out"]), Settings(), workers=2, use_cache=a["cache"] is not None,
         cache_dir=Path(a["cache"]) if a["cache"] else None, quiet=True)
from quantizer.common import peak_rss_mb  # this process's own high-water mark (VmHWM), see below
print(json.dumps({"peak_rss_mib": peak_rss_mb()}))
"""
# Why not ru_maxrss: Linux carries ru_maxrss across fork + exec (the kernel folds the old address space's high-water
# mark into the process's at exec), so a child started after the parent grew (the COCO-eval entries reach
# ~2.8 GB) reported the parent's size: 2820 MiB at every image count. VmHWM is the new address space's own.


def peak_rss(task: str, images: int, cache: Path | None = None) -> float:
    paths = pair(task)
    data = shapes_data(images)
    out = Path(tempfile.mkdtemp(prefix="bench-rss-")) / "o"
    arg = json.dumps({"float": str(paths[0]), "int8": str(paths[1]), "data": str(data), "out": str(out),
                      "cache": str(cache) if cache else None})
    r = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def bench_memory(task: str, sizes: list[int]) -> dict:
    rows = {}
    for n in sizes:
        cache = Path(tempfile.mkdtemp(prefix="bench-rss-cache-"))
        first = peak_rss(task, n, cache)
        rows[str(n)] = {"peak_rss_mib": first, "cached_peak_rss_mib": peak_rss(task, n, cache)}
    small, big = sizes[0], sizes[-1]
    growth = (rows[str(big)]["peak_rss_mib"] - rows[str(small)]["peak_rss_mib"]) / (big - small) * 1024
    return {"case": f"{task} pair, fresh process per run", "runs": rows,
            "growth_kib_per_image": growth, "target": "flat in image count"}
