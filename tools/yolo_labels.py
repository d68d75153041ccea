"""COCO split -> YOLO/Darknet label files, for the dev-only comparison tools (Ultralytics val, EdgeFirst).

Both peers read YOLO labels only: one row per non-crowd annotation, normalised and clipped to the image;
a box (``cls cx cy w h``) for detection, one polygon (``cls x0 y0 x1 y1 ...``) per instance for
segmentation. A multi-part COCO polygon must become one: ``multipart="largest"`` keeps the largest part
(what Ultralytics' own COCO converter effectively trains on), ``"merge"`` joins the parts with zero-width
bridges (every part kept, as EdgeFirst's converters do).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def clip01(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def polygon_area(flat: list[float]) -> float:
    """Shoelace area of a flat [x0, y0, x1, y1, ...] polygon."""
    xs, ys = flat[0::2], flat[1::2]
    n = min(len(xs), len(ys))
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def merge_parts(polys: list[list[float]]) -> list[float]:
    """Several polygons of one instance -> one, joined by zero-width bridges between nearest vertices.

    Each next part is entered at its vertex nearest to some vertex of what is built so far, walked once
    round, and left the way it came, so every part's outline is kept and its interior stays filled.
    """
    parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polys]
    out = parts[0]
    for p in parts[1:]:
        d = ((out[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        loop = np.concatenate([p[j:], p[: j + 1]])  # from p[j] round to p[j]
        out = np.concatenate([out[: i + 1], loop, out[i:]])
    return out.ravel().tolist()


def label_line(ann: dict, cls: int, w: int, h: int, task: str, multipart: str = "largest") -> str | None:
    """One YOLO label row (normalised, clipped to the image); None if nothing is left."""
    if task == "detect":
        x, y, bw, bh = ann["bbox"]
        x0, y0, x1, y1 = clip01(x / w), clip01(y / h), clip01((x + bw) / w), clip01((y + bh) / h)
        if x1 <= x0 or y1 <= y0:
            return None
        return f"{cls} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}"
    seg = ann["segmentation"]
    if not isinstance(seg, list):
        raise SystemExit(f"annotation {ann['id']}: non-crowd RLE segmentation has no polygon for YOLO labels")
    polys = [p for p in seg if len(p) >= 6]
    if not polys:
        return None
    if len(polys) == 1:
        poly = polys[0]
    else:
        poly = merge_parts(polys) if multipart == "merge" else max(polys, key=polygon_area)
    xy = " ".join(f"{clip01(v / (w if i % 2 == 0 else h)):.6f}" for i, v in enumerate(poly))
    return f"{cls} {xy}"


def write_labels(data: Path, images_out: Path, labels_out: Path, task: str, multipart: str = "largest") -> dict:
    """Symlink every image of ``data`` (annotations.json + images/) into ``images_out`` and write its label
    file into ``labels_out``; crowd annotations are dropped (YOLO labels cannot hold them). Returns the doc."""
    doc = json.loads((data / "annotations.json").read_text())
    cls_of = {c["id"]: i for i, c in enumerate(doc["categories"])}
    anns: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        if not a.get("iscrowd", 0):
            anns.setdefault(a["image_id"], []).append(a)
    for im in doc["images"]:
        src = (data / "images" / im["file_name"]).resolve()
        dst = images_out / Path(im["file_name"]).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_symlink():
            dst.symlink_to(src)
        w, h = im["width"], im["height"]
        lines = [label_line(a, cls_of[a["category_id"]], w, h, task, multipart) for a in anns.get(im["id"], [])]
        label = (labels_out / Path(im["file_name"]).name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{ln}\n" for ln in lines if ln))
    return doc
