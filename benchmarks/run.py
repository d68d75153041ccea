"""Benchmarks, measured side by side in one run and printed as ratios (machines here are noisy, so absolute
times mean little; ratios of things run back to back mean more). Results are kept as JSON per platform in
benchmarks/results/. Entries (each module says what its baseline is and why):

* validate-det, validate-seg (pipeline.py): `validate` wall vs the raw interpreters on inputs prepared
  before timing, 500 images, alternating, min and median of 3. Target <= 1.10.
* coco-bbox, coco-segm (coco_eval.py): our metrics entry point vs pycocotools by hand on a 5000-image,
  500k-detection case; faster-coco-eval alone for reference; stats identical. Target >= 8x / >= 4x.
* memory (memory.py): peak RSS of a det-pair run at 100 / 500 / 1000 images, fresh process each, plus the
  cached re-run. Target: flat in image count.
* cached-det, cached-seg (pipeline.py): cached re-validation of 5000 images. Target <= 10 s each.
* nms, masks (micro.py): the two hot paths against hand-written versions on the same inputs.
* ray (distributed.py): validate --ray with 1 and 2 actors vs a local run of the det pair; target <= 1.10 at
  equal parallelism; a projection of the 5000-image, 33-model sweep for N workers.
* gate-200, gate-5000 (gate.py): a cached gated re-validation (examples/gate.toml, 1000 resamples) vs the
  same run ungated, and the old per-resample recomputation scaled. Target <= 1.10 at 5000 images.

Usage: python benchmarks/run.py [--only NAME ...] [--images N] [--repeat R] [--coco-images N] [--quick]

With --only, the entries not run keep their previous values in the results file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

BENCHMARKS = ("validate-det", "validate-seg", "coco-bbox", "coco-segm", "memory", "cached-det", "cached-seg",
              "nms", "masks", "gate-200", "gate-5000", "ray")


def _line(name: str, ratio_min: float, ratio_med: float, detail: str) -> str:
    return f"{name:<26}: {ratio_min:.3f} min, {ratio_med:.3f} median  ({detail})"


def report(results: dict, only: set[str]) -> bool:
    ok = True
    for task in ("det", "seg"):
        v = results.get(f"validate_{task}") if f"validate-{task}" in only else None
        if v:
            print(_line(f"validate / bare ({task})", v["ratio_min"], v["ratio_median"],
                        f"{v['ours_min_s']:.1f} vs {v['baseline_min_s']:.1f} s min, {v['ours_median_s']:.1f} vs "
                        f"{v['baseline_median_s']:.1f} s median, {v['repeat']} repeats; {v['case']}; target <= "
                        f"{v['target']}"))
            par = v.get("vs_bare_parallel")
            if par:
                print(_line(f"validate / bare-par ({task})", par["ratio_min"], par["ratio_median"],
                            f"{par['ours_min_s']:.1f} vs {par['baseline_min_s']:.1f} s min; the raw calls on "
                            "validate's schedule, one thread per model side by side: validate's own overhead"))
    for t in ("bbox", "segm"):
        c = results.get(f"coco_{t}") if f"coco-{t}" in only else None
        if c:
            tm = c["times"]
            print(f"{'pycocotools / ours (' + t + ')':<26}: {c['speedup_min']:.1f}x min, {c['speedup_median']:.1f}x "
                  f"median  (ours {tm['ours']['min_s']:.1f} s, pycocotools {tm['pycocotools']['min_s']:.1f} s, "
                  f"faster-coco-eval alone {tm['faster']['min_s']:.1f} s = {c['faster_alone_speedup_min']:.1f}x; "
                  f"{c['case']}; identical stats: {c['identical_stats']}; target >= {c['target']}x)")
            ok &= c["identical_stats"]
    if "memory" in only and results.get("memory"):
        m = results["memory"]
        runs = ", ".join(f"{n}: {r['peak_rss_mib']:.0f} MiB (cached {r['cached_peak_rss_mib']:.0f})"
                         for n, r in m["runs"].items())
        print(f"{'peak RSS by images':<26}: {runs}; growth {m['growth_kib_per_image']:+.1f} KiB per image "
              f"({m['case']}; target flat)")
    for task in ("det", "seg"):
        c = results.get(f"cached_{task}") if f"cached-{task}" in only else None
        if c:
            print(f"{'cached re-validation (' + task + ')':<26}: {c['cached_min_s']:.1f} s min, "
                  f"{c['cached_median_s']:.1f} s median (first run {c['first_s']:.0f} s; {c['case']}; target <= "
                  f"{c['target_s']:.0f} s)")
    if "nms" in only:
        n = results["nms_vs_textbook"]
        print(_line("nms / textbook loop", n["ratio_min"], n["ratio_median"],
                    f"{n['ours_min_s'] * 1e3:.1f} vs {n['baseline_min_s'] * 1e3:.1f} ms min; {n['case']}; "
                    f"identical kept indices: {n['identical_keep']}"))
        ok &= n["identical_keep"]
    if "masks" in only:
        m = results["masks_vs_straightforward"]
        print(_line("masks / straightforward", m["ratio_min"], m["ratio_median"],
                    f"{m['ours_min_s'] * 1e3:.1f} vs {m['baseline_min_s'] * 1e3:.1f} ms min; {m['case']}; "
                    f"pixel agreement {m['pixel_agreement']:.6%}, {m['masks_identical']}/{m['masks']} identical"))
    for n in ("200", "5000"):
        g = results.get(f"gate_{n}") if f"gate-{n}" in only else None
        if g:
            b = g["before"]
            print(_line(f"gated / ungated ({n})", g["ratio_min"], g["ratio_median"],
                        f"{g['ours_min_s']:.1f} vs {g['baseline_min_s']:.1f} s min: intervals "
                        f"{g['intervals_min_s']:.1f} s; before: {b['per_resample_s'] * 1e3:.0f} ms per resample "
                        f"and model = {b['intervals_1000x2_s']:.0f} s for the gate's 1000 x 2; {g['case']}; "
                        f"target <= {g['target']}"))
    r = results.get("ray") if "ray" in only else None
    if r:
        for k, what in (("ray1_vs_local", "ray 1 worker / local"), ("ray2_vs_local", "ray 2 workers / local")):
            v = r[k]
            print(_line(what, v["ratio_min"], v["ratio_median"], f"{v['ours_min_s']:.1f} vs {v['baseline_min_s']:.1f}"
                        f" s min; {r['case']}" + (f"; target <= {r['target']}" if k == "ray1_vs_local" else "")))
        p = r["projection"]
        hours = ", ".join(f"{n}: {h:.2f} h" for n, h in p["hours_by_workers"].items())
        print(f"{'projected sweep':<26}: {p['images']} images x {p['models']} models at {p['input_px']} px, "
              f"{r['per_image_model_s'] * 1e3:.1f} ms per image and model on this machine; workers {hours}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500, help="images of the validate entries (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of each timed pair (default 3)")
    ap.add_argument("--coco-images", type=int, default=5000, help="images of the COCO-eval case (default 5000)")
    ap.add_argument("--cached-images", type=int, default=5000, help="images of the cached entries (default 5000)")
    ap.add_argument("--memory-images", type=int, nargs="+", default=[100, 500, 1000])
    ap.add_argument("--micro-repeat", type=int, default=20, help="repeats of the nms and masks entries")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 40 images, 500-image COCO case, memory at 20/40, 1 repeat")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                    help=f"run only these, of: {' '.join(BENCHMARKS)} (default: all)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.coco_images, args.cached_images, args.repeat = 40, 500, 40, 1
        args.memory_images, args.micro_repeat = [20, 40], 3
    only = set(args.only or BENCHMARKS)

    out = HERE / "results" / f"{platform.system()}-{platform.machine()}.json"
    results: dict = json.loads(out.read_text()) if args.only and out.exists() else {}
    results.update({"platform": f"{platform.system()}-{platform.machine()}", "python": platform.python_version()})
    for stale in ("images", "validate_vs_bare", "cached_revalidation", "coco_backend"):  # the old layout
        results.pop(stale, None)

    from coco_eval import bench_coco
    from distributed import bench_ray
    from gate import bench_gate
    from memory import bench_memory
    from micro import bench_masks, bench_nms
    from pipeline import bench_cached, bench_validate

    entries = {  # name -> (results key, callable); run in this order
        "validate-det": ("validate_det", lambda: bench_validate("det", args.images, args.repeat, args.threads)),
        "validate-seg": ("validate_seg", lambda: bench_validate("seg", args.images, args.repeat, args.threads)),
        "coco-bbox": ("coco_bbox", lambda: bench_coco("bbox", args.coco_images, args.repeat)),
        "coco-segm": ("coco_segm", lambda: bench_coco("segm", args.coco_images, args.repeat)),
        "memory": ("memory", lambda: bench_memory("det", args.memory_images)),
        "cached-det": ("cached_det", lambda: bench_cached("det", args.cached_images, args.repeat, args.threads)),
        "cached-seg": ("cached_seg", lambda: bench_cached("seg", args.cached_images, args.repeat, args.threads)),
        "nms": ("nms_vs_textbook", lambda: bench_nms(args.micro_repeat)),
        "masks": ("masks_vs_straightforward", lambda: bench_masks(args.micro_repeat)),
        "gate-200": ("gate_200", lambda: bench_gate("det", 200, args.repeat, args.threads)),
        "gate-5000": ("gate_5000", lambda: bench_gate("det", args.cached_images, args.repeat, args.threads)),
        "ray": ("ray", lambda: bench_ray("det", args.images, args.repeat)),
    }
    todo = [n for n in BENCHMARKS if n in only]
    for i, name in enumerate(todo, 1):
        key, fn = entries[name]
        print(f"[{i}/{len(todo)}] {name} ...", flush=True)
        t0 = time.perf_counter()
        results[key] = fn()
        print(f"[{i}/{len(todo)}] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        report(results, {name})
        sys.stdout.flush()
    print("\nall entries, side by side:")
    if not args.quick:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    ok = report(results, only)
    print("(quick run: results not written)" if args.quick else f"written {out.relative_to(ROOT)}")
    if not ok:
        print("error: a result differs from its reference (stats or kept indices)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
