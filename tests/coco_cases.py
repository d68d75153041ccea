"""Hand-made COCO ground truth and detections for the metric tests (small enough to check by hand)."""

from __future__ import annotations


def det(img: int, cat: int, box: list[float], score: float) -> dict:
    return {"image_id": img, "category_id": cat, "bbox": box, "score": score}


def gt(anns: list[dict], images: int = 1, size: int = 200) -> dict:
    """Images 1..``images`` of ``size`` x ``size``, categories 1 "a" and 3 "b"."""
    return {
        "images": [{"id": i, "width": size, "height": size} for i in range(1, images + 1)],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
        "annotations": anns,
    }
