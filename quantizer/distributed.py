"""``quantize --ray``: calibration statistics by shard on Ray actors, exactly equal to one machine's.

Each actor loads the float parent once (a path every worker sees) and streams its shards' calibration
images through it: pass 1 returns each shard's per-tensor extremes, merged with min/max on the driver; pass 2
histograms every shard over the *global* range of each sample count, and the integer histograms are summed
(:func:`quantizer.calibration.collect_sharded`). Shards are cut at every sample count, so the statistics of
``--samples 200,500`` are sums over whole shards. The variants themselves are then made on the driver from
those statistics, a few seconds each.
"""

from __future__ import annotations

from pathlib import Path

from quantizer.calibration import OnnxTap, SampleSource, TFLiteTap, collect_sharded, pass1, pass2, shard_bounds


class CalibrationActor:
    def __init__(self, parent: str, kind: str, source: SampleSource, threads: int | None):
        import os
        import socket

        from validator.errors import InputError

        paths = [parent, *map(str, source.images.paths)]
        bad = next((p for p in paths if not os.access(p, os.R_OK)), None)
        if bad is not None:
            raise InputError(f"worker {socket.gethostname()}: {bad}: not readable there (--ray needs the model and "
                             "the calibration images on a path every worker sees: shared storage)")
        self.tap = TFLiteTap(Path(parent), threads) if kind == "tflite" else OnnxTap(Path(parent), threads)
        self.source = source

    def names(self) -> list[str]:
        return list(self.tap.names)

    def pass1(self, start: int, stop: int):
        return pass1(self.tap, self.source, start, stop)

    def pass2(self, start: int, stop: int, amax: dict, bins: int):
        return pass2(self.tap, self.source, start, stop, amax, bins)


def ray_collector(parent: Path, kind: str, source: SampleSource, *, address: str, shard: int, bins: int,
                  threads: int | None = None, workers: int | None = None):
    """A ``collector(counts) -> {count: Statistics}`` for :func:`quantizer.calibration.statistics`."""
    from validator.distributed import RayOptions, connect

    def collect(counts):
        ray = connect(RayOptions(address=address))
        shards = shard_bounds(counts, shard)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = max(1, min(len(shards), workers or cpus))
        Actor = ray.remote(num_cpus=1)(CalibrationActor)
        actors = [Actor.remote(str(Path(parent).resolve()), kind, source, threads) for _ in range(n)]
        try:
            names = _get(ray, actors[0].names.remote())

            def run1(sh):
                return _get(ray, [actors[k % n].pass1.remote(a, b) for k, (a, b) in enumerate(sh)])

            def run2(sh, amax):
                return _get(ray, [actors[k % n].pass2.remote(a, b, amax, bins) for k, (a, b) in enumerate(sh)])

            return collect_sharded(names, counts, shards, run1, run2, bins=bins)
        finally:
            for a in actors:
                ray.kill(a)

    return collect


def _get(ray, refs):
    from validator.distributed import _cause

    try:
        return ray.get(refs)
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
        raise _cause(e) from None
