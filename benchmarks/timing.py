"""Side-by-side timing: ours and a baseline run back to back, alternating, after a warm-up of each."""

from __future__ import annotations

import statistics
import time


def paired_timings(ours, baseline, repeat: int) -> tuple[list[float], list[float]]:
    """Times of ``ours()`` and ``baseline()`` run back to back ``repeat`` times (order alternating), after
    one untimed warm-up call of each."""
    t_ours, t_base = side_by_side([ours, baseline], repeat)
    return t_ours, t_base


def side_by_side(fns, repeat: int) -> list[list[float]]:
    """Times of each function, run back to back ``repeat`` times (the order rotating each round), after
    one untimed warm-up call of each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeat):
        k = i % len(fns)
        order = list(range(len(fns)))[k:] + list(range(len(fns)))[:k]
        for j in order:
            t0 = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - t0)
    return times


def ratio_entry(t_ours: list[float], t_base: list[float]) -> dict:
    mo, mb = statistics.median(t_ours), statistics.median(t_base)
    return {"ours_min_s": min(t_ours), "ours_median_s": mo, "baseline_min_s": min(t_base),
            "baseline_median_s": mb, "ratio_min": min(t_ours) / min(t_base), "ratio_median": mo / mb,
            "repeat": len(t_ours)}
