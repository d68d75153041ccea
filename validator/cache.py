"""The prediction cache: a model's predictions on a dataset, keyed by everything that changes them.

Why: inference is the slow part of a validation; re-reading the same model on the same images with
another ``--metric`` or ``--backend`` should only recompute metrics. The key is the sha256 of (model file
sha256, dataset content hash, evaluated image ids, class map, input transform, every decoding setting,
qharness version); anything else that changes, a re-run misses the cache. Entries are gzip JSON lines
written while inference runs, to a temporary name renamed at the end, so a crash never leaves a truncated
entry; an unreadable entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from validator import __version__

CACHE_FORMAT = 2  # gzip: a header line (timing, box units, counts), then one detection per line


def default_cache_dir() -> Path:
    if os.environ.get("QHARNESS_CACHE"):
        return Path(os.environ["QHARNESS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qharness"


def cache_key(model_sha256: str, data_hash: str, image_ids: list[int], inputs: dict) -> str:
    """``inputs``: everything else the predictions depend on (class map, input transform, settings)."""
    payload = {"model": model_sha256, "data": data_hash,
               "images": hashlib.sha256(",".join(map(str, image_ids)).encode()).hexdigest(),
               "inputs": inputs, "qharness": __version__, "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class PredictionCache:
    """Entries are written by :class:`validator.predictions.PredictionWriter` while inference runs (to a
    temporary name, renamed at the end) and read back line by line."""

    def __init__(self, directory: Path | None):
        self.directory = directory  # None: caching off

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.jsonl.gz"

    def read(self, key: str):
        """(header, detection lines) or None on a miss (or an unreadable entry)."""
        from validator.predictions import read_cache

        p = self.path(key)
        if p is None or not p.is_file():
            return None
        return read_cache(p)
