"""Small helpers the quantizer modules share: hashing, the cache folder, peak memory, a quiet C++ stderr."""

from __future__ import annotations

import hashlib
import os
import resource
import sys
from pathlib import Path

from validator.hashing import sha256_file  # noqa: F401  (the validator's model hash: one definition)
from validator.runners.tflite import quiet_stderr  # noqa: F401  (one definition, the validator's)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/qharness/...`` (default ``~/.cache/qharness/...``), the validator's cache root."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "qharness", *parts)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux: ``VmHWM`` of /proc/self/status, the address space's own high-water mark. Not ``ru_maxrss``: the
    kernel carries it across fork + exec, so a process started by a large parent reports the parent's size.
    Elsewhere ru_maxrss (KB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
