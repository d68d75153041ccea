"""Predictions on disk: written image by image as they are made, read back when needed.

Why: a model's detections over COCO (5000 images, up to 300 detections each, masks as RLE strings) are
hundreds of MB as Python dicts; holding every model's list for the whole run made memory grow with the
dataset. Each image's results are sorted into the canonical order (image, -score, category, box: the
order COCOeval sees them in, since it breaks score ties by order) and appended to
``predictions/<name>.json`` in the staging folder: a JSON array with one detection per line, so the file
is a COCO results file while it is being written and can be read back line by line. The prediction cache
entry (gzip) is written alongside from the same lines. Metrics load one model's detections at a time;
the comparison and the report use the compact arrays (:func:`compact`) made from that one read.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


def canonical(preds: list[dict]) -> list[dict]:
    """The order predictions are written in and evaluated in (COCOeval breaks score ties by order)."""
    return sorted(preds, key=lambda p: (p["image_id"], -p["score"], p["category_id"], p["bbox"]))


class PredictionWriter:
    """Appends one image's results at a time to a results file (and, optionally, a gzip cache copy).

    Images must come in ascending id order (the dataset's order); each image's detections are sorted here,
    so the file is in canonical order when closed.
    """

    def __init__(self, path: Path, cache_path: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115  closed in close()
        self.f.write("[")
        self.cache_tmp = None
        self.cache_path = cache_path
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_tmp = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
            self.gz = gzip.open(self.cache_tmp, "wt", encoding="utf-8", compresslevel=3)
        self.count = 0
        self.last_image = None
        self.with_proto = None  # every detection carries 'segmentation_proto' (None: no detection yet)

    def add(self, dets: list[dict]) -> None:
        if not dets:
            return
        image_id = dets[0]["image_id"]
        if self.last_image is not None and image_id < self.last_image:
            raise ValueError("images must be written in ascending id order")
        self.last_image = image_id
        for d in sorted(dets, key=lambda p: (-p["score"], p["category_id"], p["bbox"])):
            line = json.dumps(d, separators=(",", ":"))
            self.f.write(line if self.count == 0 else ",\n" + line)
            if self.cache_tmp is not None:
                self.gz.write(line + "\n")
            self.count += 1
            has = "segmentation_proto" in d
            self.with_proto = has if self.with_proto is None else (self.with_proto and has)

    def close(self, cache_header: dict | None = None) -> int:
        """Finish the file; the cache entry (header line + detection lines) lands atomically."""
        self.f.write("]\n")
        self.f.close()
        if self.cache_tmp is not None:
            self.gz.close()
            if cache_header is not None:
                _prepend_header(self.cache_tmp, self.cache_path, {**cache_header, "count": self.count})
            else:
                self.cache_tmp.unlink(missing_ok=True)
        return self.count

    def abort(self) -> None:
        for f in (self.f, getattr(self, "gz", None)):
            if f is not None and not f.closed:
                f.close()
        if self.cache_tmp is not None:
            self.cache_tmp.unlink(missing_ok=True)


def _prepend_header(body: Path, dest: Path, header: dict) -> None:
    """Cache entry = gzip(header line) + gzip(body): gzip members concatenate into one stream."""
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.hdr")
    with open(tmp, "wb") as out:
        out.write(gzip.compress((json.dumps(header) + "\n").encode(), compresslevel=3))
        with open(body, "rb") as b:
            while chunk := b.read(1 << 20):
                out.write(chunk)
    os.replace(tmp, dest)
    body.unlink(missing_ok=True)


def read_cache(path: Path) -> tuple[dict, Iterator[str]] | None:
    """(header, detection lines) of a cache entry written by :class:`PredictionWriter`; None if unreadable."""
    try:
        f = gzip.open(path, "rt", encoding="utf-8")
        header = json.loads(f.readline())
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(header, dict) or header.get("format") != 2:
        f.close()
        return None

    def lines():
        with f:
            for ln in f:
                if ln.strip():
                    yield ln.rstrip("\n")

    return header, lines()


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """A results file from detection lines (a cache hit): the same bytes the writer makes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for ln in lines:
            f.write(ln if n == 0 else ",\n" + ln)
            n += 1
        f.write("]\n")
    return n


def iter_lines(path: Path) -> Iterator[str]:
    """The detection lines of a results file written by this module (one detection per line)."""
    with open(path, encoding="utf-8") as f:
        for ln in f:
            ln = ln.rstrip("\n")
            if ln.startswith("["):
                ln = ln[1:]
            if ln.endswith("]"):
                ln = ln[:-1]
            if ln.endswith(","):
                ln = ln[:-1]
            if ln:
                yield ln


def read_predictions(path: Path) -> list[dict]:
    """All detections of a results file, in file order (one ``json.load``: the C parser on the whole file
    is 3x faster than parsing it line by line)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def compact(preds: list[dict]) -> dict[str, np.ndarray]:
    """image_id, category_id, score and xywh bbox arrays of the detections, in list order (for a results
    file: row i is line i). ~56 bytes a detection, against ~1 KB as dicts."""
    n = len(preds)
    return {"image_id": np.fromiter((d["image_id"] for d in preds), np.int64, n),
            "category_id": np.fromiter((d["category_id"] for d in preds), np.int64, n),
            "score": np.fromiter((d["score"] for d in preds), np.float64, n),
            "bbox": np.asarray([d["bbox"] for d in preds], np.float64).reshape(-1, 4)}


def read_rows(path: Path, rows: Iterable[int]) -> dict[int, dict]:
    """{row: detection} of the given rows (line numbers, from 0) of a results file written by this module:
    only those lines are parsed (the report's gallery wants a few images' detections out of 100k+)."""
    wanted = {int(r) for r in rows}
    out: dict[int, dict] = {}
    if not wanted:
        return out
    last = max(wanted)
    for i, ln in enumerate(iter_lines(path)):
        if i in wanted:
            out[i] = json.loads(ln)
            if i == last:
                break
    return out
