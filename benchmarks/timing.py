"""Side-by-side timing: ours and a baseline run back to back, alternating, after a warm-up of each."""

from __future__ import annotations

import statistics
import time


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
