"""A deterministic COCO-sized evaluation case, annotations only (no pixels): ground truth and detections.

Why synthetic: the COCO-eval benchmark must run offline and at COCO's scale (5000 images, ~35k ground-truth
objects with some crowd regions, 80 categories, 100 detections per image), which the shapes fixtures are
not. Objects are random convex polygons (their box from the polygon, crowds as RLE regions as COCO stores
them); detections are jittered copies of ground truth (sometimes with the wrong class) plus background
boxes, scores uniform; for ``segm`` each detection carries an RLE mask (its polygon, jittered). Same seed,
same bytes.
"""

from __future__ import annotations

import numpy as np

CATEGORIES = 80


def _polygon(rng, cx, cy, r, k=8) -> list[float]:
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.6, 1.0, k)
    return [float(v) for xy in zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True) for v in xy]


def make_case(images: int = 5000, dets_per_image: int = 100, seed: int = 0, masks: bool = False) -> tuple[dict, list]:
    """(ground-truth dict, detections list) for ``images`` images; RLE masks on detections when ``masks``."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    imgs, anns, dets = [], [], []
    for i in range(1, images + 1):
        w, h = int(rng.choice([640, 480, 512, 427])), int(rng.choice([480, 640, 384, 427]))
        imgs.append({"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
        n = int(rng.poisson(7))
        objs = []
        for _ in range(n):
            r = float(np.exp(rng.uniform(np.log(4), np.log(min(w, h) / 3))))
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            poly = np.clip(np.array(_polygon(rng, cx, cy, r)).reshape(-1, 2), 0, [w, h]).ravel().tolist()
            xs, ys = poly[0::2], poly[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            cat = int(rng.integers(1, CATEGORIES + 1))
            crowd = bool(rng.random() < 0.01)
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
            seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")} if crowd else [poly]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": box,
                         "area": float(mask_utils.area(rle)), "iscrowd": int(crowd), "segmentation": seg})
            objs.append((poly, box, cat))
        for _ in range(dets_per_image):
            if objs and rng.random() < 0.6:
                poly, box, cat = objs[int(rng.integers(len(objs)))]
                s = max(box[2], box[3]) * 0.08
                dx, dy = rng.normal(0, s, 2)
                poly = (np.array(poly).reshape(-1, 2) + [dx, dy]).ravel().tolist()
                if rng.random() < 0.1:
                    cat = int(rng.integers(1, CATEGORIES + 1))
            else:
                r = float(rng.uniform(4, min(w, h) / 4))
                poly = _polygon(rng, rng.uniform(r, w - r), rng.uniform(r, h - r), r, 5)
                cat = int(rng.integers(1, CATEGORIES + 1))
            xs, ys = poly[0::2], poly[1::2]
            x0, y0 = min(xs), min(ys)
            d = {"image_id": i, "category_id": cat,
                 "bbox": [round(x0, 2), round(y0, 2), round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
                 "score": round(float(rng.random()), 5)}
            if masks:
                rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
                d["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            dets.append(d)
    gt = {"images": imgs, "annotations": anns, "info": {}, "licenses": [],
          "categories": [{"id": c, "name": f"class{c}"} for c in range(1, CATEGORIES + 1)]}
    dets.sort(key=lambda p: (p["image_id"], -p["score"], p["category_id"], p["bbox"]))
    return gt, dets
