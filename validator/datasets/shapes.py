"""Deterministic synthetic COCO-format dataset ("shapes") for the offline fixture world.

Why it exists: nothing can be downloaded where qharness is developed and tested, so the metrics, the
fixture models and the demo all run on this generated dataset. It is built to stress what COCO
evaluation cares about, not to be easy:

* images of several sizes and aspect ratios (portrait, landscape, square), some grayscale;
* six named classes with non-contiguous category ids (COCO has gaps too);
* objects in all three COCO area ranges (small < 32^2, medium, large >= 96^2), rotated;
* overlaps and occlusions: the annotation is the *visible* region (modal, like COCO), computed exactly
  with shapely, possibly several polygons, never with holes; objects cut by the image border;
* textured, noisy backgrounds and textured objects, occasionally low contrast;
* ``iscrowd=1`` regions (a cluster of tiny shapes of one class) stored as compressed RLE;
* some images with no objects at all.

``coco_like``: the same shapes in a file shaped like COCO val2017, because fixtures alone hid a crash on
it (an array sized by the largest annotation id: val2017's crowd ids are ~9e11). Sparse 6-digit image ids
listed out of id order, file names ``000000xxxxxx.jpg``, COCO's photo sizes (mostly 640x480, longest
side 640), COCO's 80 category ids (1..90 with its gaps; the six shapes take six of them, the other 74
keep COCO's names and have no objects), annotation ids sparse up to ~2.3e6 and crowd ids as val2017
builds them (9e11 + category id x 1e8 + image id), ~7 objects per image with a long tail, objects scaled
with the image so a 256-320 px model sees them as it does in the default mode.

Determinism: every image draws from its own ``numpy.random.default_rng([seed, image_index])``, JSON is
written with a fixed key order and rounded floats, JPEGs with fixed settings: same arguments give
byte-identical files (for the same Pillow/libjpeg build).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Category ids are deliberately non-contiguous: model class index i maps to the i-th category in
# file order, never to id i.
CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "circle"),
    (2, "triangle"),
    (4, "square"),
    (7, "star"),
    (9, "hexagon"),
    (13, "cross"),
)

# (width, height): landscape, portrait and square, none larger than 384 so a 256-320 px model sees
# small objects at a few pixels but not below the stride.
IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (320, 240),
    (240, 320),
    (256, 256),
    (384, 288),
    (288, 384),
    (352, 352),
    (384, 216),
    (300, 200),
)

# COCO's 80 detection categories (instances_val2017.json): ids 1..90 with 10 gaps.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = tuple(enumerate([
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", None, "backpack", "umbrella", None, None, "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", None, "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", None, "dining table", None, None, "toilet", None, "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", None,
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"], start=1))
COCO_CATEGORIES = tuple((i, n) for i, n in COCO_CATEGORIES if n is not None)
# coco_like: the COCO ids the six shapes take (the first and the last id among them), in CATEGORIES order
COCO_LIKE_SHAPE_IDS: tuple[int, ...] = (1, 18, 44, 62, 77, 90)
# COCO val2017's common photo sizes (width, height) and roughly how often they occur
COCO_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 426),
                                           (640, 428), (500, 375), (375, 500), (640, 360), (612, 612))
COCO_SIZE_PROBS: tuple[float, ...] = (0.42, 0.12, 0.14, 0.06, 0.06, 0.04, 0.05, 0.03, 0.05, 0.03)
COCO_CROWD_ID_BASE = 900_000_000_000  # val2017: crowd annotation id = 9e11 + category id * 1e8 + image id

# Object size buckets as a linear size (circumradius in px) so that areas fall into COCO's ranges.
SIZE_BUCKETS = {"small": (7.0, 15.0), "medium": (19.0, 48.0), "large": (78.0, 135.0)}
SIZE_PROBS = {"small": 0.30, "medium": 0.40, "large": 0.30}

MIN_VISIBLE_FRACTION = 0.35  # an object more hidden than this is rejected and re-sampled
MIN_PART_AREA = 6.0  # visible slivers smaller than this (px^2) are dropped from the annotation


@dataclass(frozen=True)
class ShapesConfig:
    """Generator settings; the defaults are the recipe used for the fixtures (datasets/shapes.json)."""

    images: int = 200
    seed: int = 0
    empty_fraction: float = 0.08
    gray_fraction: float = 0.05
    crowd_fraction: float = 0.12
    max_objects: int = 8
    jpeg_quality: int = 92
    coco_like: bool = False  # ids, names, sizes and object counts shaped like COCO val2017 (module docstring)


# ----------------------------------------------------------------------------------------- geometry
def _regular(n: int, r: float, phase: float) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _outline(name: str, r: float, aspect: float, rot: float) -> np.ndarray:
    """Polygon (N, 2) centred at the origin with circumradius ~r."""
    if name == "circle":
        pts = _regular(max(24, int(r * 1.5)), r, 0.0)
    elif name == "triangle":
        pts = _regular(3, r, -math.pi / 2)
    elif name == "square":
        pts = _regular(4, r, math.pi / 4)
    elif name == "hexagon":
        pts = _regular(6, r, 0.0)
    elif name == "star":
        outer = _regular(5, r, -math.pi / 2)
        inner = _regular(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
    elif name == "cross":
        a, b = r * 0.7, r * 0.25
        pts = np.array(
            [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
             (-a, b), (-a, -b), (-b, -b)], dtype=float)  # fmt: skip
    else:  # pragma: no cover - guarded by CATEGORIES
        raise ValueError(name)
    pts = pts * np.array([aspect, 1.0])
    c, s = math.cos(rot), math.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def _shape_polygon(rng: np.random.Generator, name: str, r: float, cx: float, cy: float):
    from shapely.geometry import Polygon

    aspect = 1.0 if name in ("square", "hexagon", "star", "cross") else float(rng.uniform(0.75, 1.3))
    if name == "circle" and rng.random() < 0.5:
        aspect = 1.0
    pts = _outline(name, r, aspect, float(rng.uniform(0, 2 * math.pi))) + np.array([cx, cy])
    return Polygon(pts)


def _parts(geom) -> list:
    """Polygon parts of a shapely geometry (drops points/lines an intersection may leave)."""
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]


def _clean(geom):
    """Visible region as a list of hole-free polygons, slivers removed; None if it has holes."""
    parts = [p for p in _parts(geom) if p.area >= MIN_PART_AREA]
    if any(len(p.interiors) for p in parts):
        return None
    return parts


def _flat(poly) -> list[float]:
    xy = np.asarray(poly.exterior.coords)[:-1]
    return [round(float(v), 2) for v in xy.reshape(-1)]


# ----------------------------------------------------------------------------------------- textures
def _noise_field(rng: np.random.Generator, h: int, w: int, scales=(4, 16, 48)) -> np.ndarray:
    """Smooth multi-scale value noise in [0, 1], shape (h, w)."""
    acc = np.zeros((h, w), np.float32)
    total = 0.0
    for i, s in enumerate(scales):
        gh, gw = max(2, h // s + 2), max(2, w // s + 2)
        grid = rng.random((gh, gw), dtype=np.float32)
        img = Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        weight = 0.5**i
        acc += weight * (np.asarray(img, np.float32) / 255.0)
        total += weight
    return acc / total


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    tint = rng.uniform(-60, 60, size=3).astype(np.float32)
    field = _noise_field(rng, h, w)[..., None]
    img = base + tint * (field - 0.5) * 2
    kind = rng.integers(0, 3)
    if kind == 1:  # stripes
        yy, xx = np.mgrid[0:h, 0:w]
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        stripes = np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period)
        img += (stripes[..., None] * rng.uniform(8, 25)).astype(np.float32)
    elif kind == 2:  # linear gradient
        g = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
        img += g * rng.uniform(10, 40)
    img += rng.normal(0, rng.uniform(3, 12), size=(h, w, 3)).astype(np.float32)
    return img


def _paint(canvas: np.ndarray, polygons, color: np.ndarray, rng: np.random.Generator) -> None:
    """Fill polygons into canvas (in place) with a textured colour."""
    h, w = canvas.shape[:2]
    mask_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask_img)
    for poly in polygons:
        draw.polygon([tuple(p) for p in np.asarray(poly.exterior.coords)], fill=255)
    mask = np.asarray(mask_img) > 0
    if not mask.any():
        return
    field = _noise_field(rng, h, w, scales=(3, 10))[..., None]
    layer = color + (field - 0.5) * rng.uniform(10, 50)
    canvas[mask] = layer[mask]


# ----------------------------------------------------------------------------------------- one image
def _make_image(cfg: ShapesConfig, index: int):
    from shapely.geometry import box as sbox
    from shapely.ops import unary_union

    rng = np.random.default_rng([cfg.seed, index])
    if cfg.coco_like:
        w, h = COCO_SIZES[int(rng.choice(len(COCO_SIZES), p=COCO_SIZE_PROBS))]
        k = max(w, h) / 320.0  # objects scale with the photo: a model input sees them as in the default mode
    else:
        w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        k = 1.0
    canvas = _background(rng, h, w)
    frame = sbox(0, 0, w, h)

    empty = rng.random() < cfg.empty_fraction
    crowd = None
    if not empty and rng.random() < cfg.crowd_fraction:
        cls = int(rng.integers(len(CATEGORIES)))
        rw, rh = k * float(rng.uniform(50, 110)), k * float(rng.uniform(40, 90))
        x0, y0 = float(rng.uniform(0, max(1, w - rw))), float(rng.uniform(0, max(1, h - rh)))
        color = rng.uniform(0, 255, size=3).astype(np.float32)
        members = []
        for _ in range(int(rng.integers(10, 22))):
            r = k * float(rng.uniform(3.0, 6.0))
            cx, cy = x0 + float(rng.uniform(0, rw)), y0 + float(rng.uniform(0, rh))
            members.append(_shape_polygon(rng, CATEGORIES[cls][1], r, cx, cy))
        crowd = (cls, unary_union(members).intersection(frame))
        _paint(canvas, _parts(crowd[1]), color, rng)

    # Place objects back to front; every new object may hide earlier ones, and is rejected if it
    # would hide too much of any of them or cut a hole into one.
    objects: list[dict] = []  # {"cls", "full", "visible"}
    if empty:
        n_target = 0
    elif cfg.coco_like:  # val2017: ~7 objects per image, most images few, a long tail of crowded ones
        n_target = min(1 + int(rng.negative_binomial(1.2, 1.2 / 7.2)), 40)
    else:
        n_target = int(rng.integers(1, cfg.max_objects + 1))
    attempts = 0
    while len(objects) < n_target and attempts < n_target * 12:
        attempts += 1
        cls = int(rng.integers(len(CATEGORIES)))
        bucket = rng.choice(list(SIZE_PROBS), p=list(SIZE_PROBS.values()))
        lo, hi = SIZE_BUCKETS[str(bucket)]
        r = float(rng.uniform(k * lo, min(k * hi, 0.48 * min(w, h))))
        # up to ~20% of the object may fall outside the frame
        cx = float(rng.uniform(-0.2 * r, w + 0.2 * r))
        cy = float(rng.uniform(-0.2 * r, h + 0.2 * r))
        shape = _shape_polygon(rng, CATEGORIES[cls][1], r, cx, cy)
        own = _clean(shape.intersection(frame))
        if not own or sum(p.area for p in own) < MIN_VISIBLE_FRACTION * shape.area:
            continue
        updated = []
        ok = True
        for ob in objects:
            vis = ob["visible"].difference(shape)
            parts = _clean(vis)
            if parts is None or sum(p.area for p in parts) < MIN_VISIBLE_FRACTION * ob["full"].area:
                ok = False
                break
            updated.append(unary_union(parts) if parts else vis)
        if not ok:
            continue
        for ob, vis in zip(objects, updated, strict=True):
            ob["visible"] = vis
        objects.append({"cls": cls, "full": shape, "visible": unary_union(own)})

    # Paint back to front with each object's full outline: later objects cover earlier ones exactly
    # where the geometry says they do.
    for ob in objects:
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        if rng.random() < 0.15:  # low contrast against the local background
            base = canvas.reshape(-1, 3).mean(0) + rng.uniform(-35, 35, size=3)
        _paint(canvas, _parts(ob["full"].intersection(frame)), base, rng)

    gray = rng.random() < cfg.gray_fraction
    pixels = np.clip(canvas, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if gray:
        image = image.convert("L")

    anns = []
    for ob in objects:
        parts = _clean(ob["visible"])
        if not parts:
            continue
        anns.append(("poly", ob["cls"], parts))
    if crowd is not None:
        vis = crowd[1]
        for ob in objects:
            vis = vis.difference(ob["full"])
        if not vis.is_empty and vis.area >= MIN_PART_AREA:
            anns.append(("crowd", crowd[0], _parts(vis)))
    return image, (w, h), anns


def _crowd_rle(parts, w: int, h: int) -> dict:
    from pycocotools import mask as mask_utils

    polys = [_flat(p) for p in parts]
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    return rle


# ----------------------------------------------------------------------------------------- writer
def generate(out: Path | str, cfg: ShapesConfig, *, progress: bool = False) -> Path:
    """Write ``out/images/*.jpg`` and ``out/annotations.json``; returns the JSON path."""
    from pycocotools import mask as mask_utils
    from shapely.geometry import Polygon

    out = Path(out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    ids = _coco_like_ids(cfg) if cfg.coco_like else None
    cat_ids = COCO_LIKE_SHAPE_IDS if cfg.coco_like else tuple(cid for cid, _ in CATEGORIES)
    images, annotations = [], []
    indices = range(cfg.images)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="shapes", unit="img")
    for i in indices:
        image_id = i + 1 if ids is None else int(ids["image"][i])
        image, (w, h), anns = _make_image(cfg, i)
        name = f"{image_id:012d}.jpg"
        image.save(img_dir / name, format="JPEG", quality=cfg.jpeg_quality, optimize=False)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for kind, cls, parts in anns:
            cat_id = cat_ids[cls]
            if kind == "poly":
                # bbox and area from the stored (rounded) coordinates, so they agree exactly
                seg = [_flat(p) for p in parts]
                area = round(float(sum(Polygon(np.reshape(s, (-1, 2))).area for s in seg)), 2)
                xs = [v for s in seg for v in s[0::2]]
                ys = [v for s in seg for v in s[1::2]]
                x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
                crowd = 0
            else:
                rle = _crowd_rle(parts, w, h)
                area = float(mask_utils.area(rle))
                x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
                x0, y0, x1, y1 = x, y, x + bw, y + bh
                seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
                crowd = 1
            if area <= 0:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id,
                    "segmentation": seg,
                    "area": area,
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 4), round(y1 - y0, 4)],
                    "iscrowd": crowd,
                }
            )
    categories = [{"id": cid, "name": n, "supercategory": "shape"} for cid, n in CATEGORIES]
    if ids is not None:
        images, annotations, categories = _coco_like_layout(cfg, ids, images, annotations)
    doc = {
        "info": {
            "description": "qharness synthetic shapes dataset" + (" (COCO val2017-like ids and layout)"
                                                                   if cfg.coco_like else ""),
            "version": "1",
            "year": 2026,
            "contributor": "qharness",
            "generator": {"name": "shapes", "images": cfg.images, "seed": cfg.seed,
                          **({"coco_like": True} if cfg.coco_like else {})},
        },
        "licenses": [{"id": 1, "name": "CC0-1.0", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return path


def _coco_like_ids(cfg: ShapesConfig) -> dict:
    """Sparse 6-digit image ids (val2017's range), ascending with the image index."""
    rng = np.random.default_rng([cfg.seed, 0, 1])  # a stream of its own: images draw from [seed, index]
    return {"image": np.sort(rng.choice(np.arange(100, 581_782), size=cfg.images, replace=False)), "rng": rng}


def _coco_like_layout(cfg: ShapesConfig, ids: dict, images: list, annotations: list):
    """val2017's layout: annotation ids sparse (crowds 9e11 + category x 1e8 + image id), images and
    annotations listed out of id order, the 80 COCO categories with the shapes at six of their ids."""
    rng = ids["rng"]
    plain = [a for a in annotations if not a["iscrowd"]]
    for a, new_id in zip(plain, np.sort(rng.choice(2_300_000, size=len(plain), replace=False)) + 1, strict=True):
        a["id"] = int(new_id)
    for a in annotations:
        if a["iscrowd"]:
            a["id"] = COCO_CROWD_ID_BASE + a["category_id"] * 100_000_000 + a["image_id"]
    images = [images[k] for k in rng.permutation(len(images))]
    annotations = [annotations[k] for k in rng.permutation(len(annotations))]
    shape_of = dict(zip(COCO_LIKE_SHAPE_IDS, (n for _, n in CATEGORIES), strict=True))
    categories = [{"id": cid, "name": shape_of.get(cid, n), "supercategory": "shape" if cid in shape_of else "coco"}
                  for cid, n in COCO_CATEGORIES]
    return images, annotations, categories
