"""What ``quantize`` writes beside its models: a manifest per variant and ``variants.json`` listing them all.

Both are plain JSON, readable without importing the quantizer (``validate --manifest variants.json`` reads
them). Paths of variant files are relative to the folder holding ``variants.json`` (each variant's own
manifest lies in that same folder, so the same relative path works from both); paths of models outside
that folder (the float reference, the float parent) are absolute.

``variants.json``::

    {
      "format": "qharness-variants", "version": 1,
      "tool": {"name": "quantize", "qharness": "0.1.0"},
      "float_model": {"path": "/abs/shapes-det.onnx", "sha256": "...", "format": "onnx"},
      "calibration": {"source": "/abs/calib", "images_available": 600},
      "complete": true, "planned": 12,   # false while building or after an interrupt: the variants finished
      "variants": [<variant manifest>, ...]          # in build order
    }

A variant manifest (also written as ``<variant file name>.json``)::

    {
      "format": "qharness-variant", "version": 1,
      "name": "shapes-det.split.minmax.n200.channel.int8",     # unique within variants.json; a table label
      "path": "shapes-det.split.minmax.n200.channel.int8.tflite",
      "sha256": "...", "bytes": 3101712,
      "model_format": "tflite" | "onnx",
      "precision": "int8" | "float16" | "dynamic-int8",       # int8: weights and activations (static)
      "strategy": {"name": "minmax" | "percentile" | "entropy" | "mse" | "fp16" | "dynamic",
                   "params": {"percentile": 99.99}, "spec": "percentile:99.99"},
      "samples": 200,                   # calibration images used; null for fp16 / dynamic
      "granularity": "channel" | "tensor" | null,              # weights; null for fp16
      "layout": "split" | "monolithic" | "given",              # given: a float .tflite used as it was
      "io": {"input": {"name", "shape", "dtype", "scale", "zero_point"},
             "outputs": [{"name", "shape", "dtype", "scale", "zero_point"}, ...]},
      "recipe": {"source": "static_int8" | "/abs/R.json", "rules": [...]},   # null for ONNX
      "float_model": {"path": "/abs/shapes-det.onnx", "sha256": "..."},       # the reference to compare with
      "parent_model": {"path": "/abs/...float32.tflite", "sha256": "...", "format": "tflite"},  # what was quantized
      "calibration": {                  # null for fp16 / dynamic
        "source": "/abs/calib", "count": 200,
        "list_sha256": "...",           # sha256 over "<name>\\0<sha256 of the file>\\n" of the images, in order
        "images": ["000000000001.jpg", ...],     # names as in the COCO JSON (file_name) or relative to the folder
        "resize": "letterbox", "resample": "antialias",
        "input_transform": {"range": "0,1", "gain": [...], "offset": [...], "raw_pixels": false, "source": "..."},
        "input_range": [0.0, 1.0],      # the model input's pinned range
        "bins": 2048, "min_width": 0.01, "statistics_cached": false
      },
      "tools": {"qharness": "...", "ai-edge-quantizer": "...", "ai-edge-litert": "...", "onnxruntime": "...",
                "onnx": "...", "numpy": "...", "onnx2tf": "...", "tensorflow": "..."},
      "wall_seconds": 2.4,              # building this variant (emit + check), statistics not included
      "peak_rss_mb": 310.5,             # the quantize process's peak so far
      "check": {                        # vs parent_model, per output and role, on held-out images
        "images": ["000000000501.jpg", ...], "held_out": true,
        "outputs": [{"name": "boxes", "role": "boxes", "sqnr_db": 38.1, "max_abs_error": 0.006}, ...]
      }
    }

The validator warns when ``calibration.images`` overlap the evaluation images (compare by file name; a
COCO ``file_name`` and a folder-relative path agree for datasets laid out like the shapes generator's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

INDEX_FORMAT = "qharness-variants"
VARIANT_FORMAT = "qharness-variant"
VERSION = 1
INDEX_NAME = "variants.json"
REQUIRED = ("name", "path", "sha256", "model_format", "precision", "strategy", "samples", "granularity", "layout",
            "io", "float_model", "parent_model", "calibration", "tools", "check")


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def manifest_path(out_dir: Path, entry: dict) -> Path:
    return Path(out_dir) / f"{entry['path']}.json"


def write_variant(out_dir: Path, entry: dict) -> Path:
    """Write one variant's manifest beside its model; returns its path."""
    doc = {"format": VARIANT_FORMAT, "version": VERSION, **entry}
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise ValueError(f"variant manifest lacks {', '.join(missing)}")
    p = manifest_path(out_dir, entry)
    _write_json(p, doc)
    return p


def write_index(out_dir: Path, entries: list[dict], float_model: dict, calibration: dict, tool: dict, *,
                complete: bool = True, planned: int | None = None) -> Path:
    """Write ``variants.json``; variant files an earlier run listed there and this run did not make are
    removed (with their manifests), so the folder holds what the index says.

    ``quantize`` rewrites it after every variant with ``complete`` false (``planned``: how many the run
    builds), so an interrupted run leaves an index of exactly the variants that are finished."""
    out_dir = Path(out_dir)
    index = out_dir / INDEX_NAME
    old = load_index(index) if index.is_file() else None
    keep = {e["path"] for e in entries}
    if old is not None:
        for e in old.get("variants", []):
            rel = e.get("path")
            if isinstance(rel, str) and rel not in keep and "/" not in rel and "\\" not in rel:
                for p in (out_dir / rel, out_dir / f"{rel}.json"):
                    if p.is_file():
                        p.unlink()
    doc = {"format": INDEX_FORMAT, "version": VERSION, "tool": tool, "float_model": float_model,
           "calibration": calibration, "complete": complete, "planned": len(entries) if planned is None else planned,
           "variants": [{"format": VARIANT_FORMAT, "version": VERSION, **e} for e in entries]}
    _write_json(index, doc)
    return index


def load_index(path: Path) -> dict | None:
    """``variants.json`` as a dict, or None when it is not one (unreadable, other format)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("variants"), list):
        return None
    return doc
