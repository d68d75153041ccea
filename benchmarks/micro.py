"""Micro benchmarks of two hot paths against what one would write by hand (same inputs, same results).

* NMS vs the textbook greedy loop in numpy (take the best box, drop what overlaps it, repeat) on the
  8400 grid-anchored candidates of a 640x640 YOLO head (80 classes, IoU 0.7, 300 kept); the kept indices
  must be identical.
* Instance masks (100 detections, 32 prototypes 160x160, 640x480 image) vs every prototype resampled to
  the image (PIL bilinear), coefs @ protos, sigmoid, crop to the box, threshold, RLE-encode; the pixel
  agreement is reported.
"""

from __future__ import annotations

from timing import paired_timings, ratio_entry


def nms_candidates() -> tuple:
    """Grid-anchored candidates like a 640x640 YOLO head (strides 8, 16, 32: 8400 boxes), 80 classes."""
    import numpy as np

    rng = np.random.default_rng(0)
    pts = []
    for s in (8, 16, 32):
        g = (np.arange(640 // s) + 0.5) * s
        gx, gy = np.meshgrid(g, g)
        pts.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], 1))
    p = np.concatenate(pts)
    wh = p[:, 2:3] * rng.uniform(1, 6, (len(p), 2))
    boxes = np.concatenate([p[:, :2] - wh / 2, p[:, :2] + wh / 2], 1).astype(np.float32)
    return boxes, rng.random(len(p)).astype(np.float32), rng.integers(0, 80, len(p))


def textbook_nms(boxes, scores, iou_threshold: float, classes, max_det: int = 300):
    """What one writes by hand: take the best remaining box, drop the remaining boxes of its class whose
    IoU with it exceeds the threshold, repeat. Ties in score keep input order."""
    import numpy as np

    b = boxes.astype(np.float64)
    x1, y1, x2, y2 = b.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    keep = []
    while order.size and len(keep) < max_det:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        order = rest[~((iou > iou_threshold) & (classes[rest] == classes[i]))]
    return np.array(keep, dtype=np.intp)


def bench_nms(repeat: int) -> dict:
    from validator.decode.nms import nms

    boxes, scores, classes = nms_candidates()
    ours = nms(boxes, scores, 0.7, classes)
    base = textbook_nms(boxes, scores, 0.7, classes)
    t_ours, t_base = paired_timings(lambda: nms(boxes, scores, 0.7, classes),
                                    lambda: textbook_nms(boxes, scores, 0.7, classes), repeat)
    return {"case": f"{len(boxes)} grid-anchored candidates, 80 classes, IoU 0.7, max_det 300",
            "baseline": "textbook greedy loop (numpy)", **ratio_entry(t_ours, t_base), "kept": len(ours),
            "identical_keep": ours.tolist() == base.tolist()}


def mask_inputs() -> tuple:
    """100 detections with 32 prototypes (160x160) of a 640x640 canvas letterboxing a 640x480 image."""
    import numpy as np

    from validator.decode.geometry import Letterbox

    rng = np.random.default_rng(0)
    lb = Letterbox.fit((480, 640), (640, 640))
    protos = rng.normal(size=(32, 160, 160)).astype(np.float32)
    coefs = rng.normal(size=(100, 32)).astype(np.float32)
    xy = rng.uniform(0, 640, (100, 2))
    wh = rng.uniform(10, 200, (100, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    return protos, coefs, boxes, lb, (480, 640)


def straightforward_masks(protos, coefs, boxes_input, lb, hw):
    """Every prototype resampled to the original image (PIL bilinear over the letterbox content, half-pixel
    centres), then sigmoid(coefs @ protos), cropped to the pixels whose centre is inside the box (mapped to
    the image), thresholded at 0.5. Returns the (n, h, w) bool masks and their COCO RLEs."""
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    nm, ph, pw = protos.shape
    h, w = hw
    cell_y, cell_x = lb.input_hw[0] / ph, lb.input_hw[1] / pw
    box = (lb.pad_x / cell_x, lb.pad_y / cell_y, (lb.pad_x + w * lb.scale_x) / cell_x,
           (lb.pad_y + h * lb.scale_y) / cell_y)  # the letterbox content, in proto cells
    full = np.stack([np.asarray(Image.fromarray(p, mode="F").resize((w, h), Image.BILINEAR, box=box))
                     for p in protos])  # (nm, h, w)
    with np.errstate(over="ignore"):
        prob = 1 / (1 + np.exp(-(coefs @ full.reshape(nm, -1)))).reshape(-1, h, w)
    b = boxes_input.astype(np.float64)
    x1 = np.clip((b[:, 0] - lb.pad_x) / lb.scale_x, 0, w)[:, None]
    x2 = np.clip((b[:, 2] - lb.pad_x) / lb.scale_x, 0, w)[:, None]
    y1 = np.clip((b[:, 1] - lb.pad_y) / lb.scale_y, 0, h)[:, None]
    y2 = np.clip((b[:, 3] - lb.pad_y) / lb.scale_y, 0, h)[:, None]
    cx, cy = np.arange(w) + 0.5, np.arange(h) + 0.5
    inside = ((cy >= y1) & (cy < y2))[:, :, None] & ((cx >= x1) & (cx < x2))[:, None, :]
    masks = (prob > 0.5) & inside
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return masks, rles


def bench_masks(repeat: int) -> dict:
    import numpy as np
    from pycocotools import mask as mask_utils

    from validator.decode.masks import masks_to_rles

    args = mask_inputs()
    ours = np.array([mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()})
                     for r in masks_to_rles(*args)]).astype(bool)
    base, _ = straightforward_masks(*args)
    either = ours | base
    t_ours, t_base = paired_timings(lambda: masks_to_rles(*args), lambda: straightforward_masks(*args), repeat)
    return {"case": f"{len(args[1])} detections, {args[0].shape[0]} protos {args[0].shape[1]}x{args[0].shape[2]}, "
                    f"{args[4][1]}x{args[4][0]} image",
            "baseline": "PIL bilinear of all protos, coefs @ protos, sigmoid, crop, threshold, RLE",
            **ratio_entry(t_ours, t_base),
            "pixel_agreement": float((ours == base).mean()),
            "agreement_on_mask_pixels": float((ours == base)[either].mean()) if either.any() else 1.0,
            "pixels_differing": int((ours != base).sum()),
            "masks_identical": int((ours == base).all(axis=(1, 2)).sum()), "masks": len(ours)}
