"""COCO-format dataset: annotation JSON checked for the fields evaluation needs, image paths, hashes.

Why strict: a truncated or schema-invalid annotation file must stop the run with one line naming the
file and the problem, never produce a silently wrong mAP.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from validator.errors import InputError
from validator.hashing import sha256_file

_ANN_CANDIDATES = ("annotations.json", "annotations/instances_val2017.json", "instances_val2017.json")
_IMG_CANDIDATES = ("images", "val2017", "images/val2017")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    file_name: str
    width: int
    height: int
    path: Path


@dataclass(frozen=True)
class Dataset:
    """A validated COCO dataset. `gt` is the parsed JSON, restricted to `images` when `--limit` is set."""

    annotations_path: Path
    images_dir: Path
    gt: dict
    images: tuple[ImageRecord, ...]
    categories: tuple[dict, ...]
    missing: tuple[str, ...] = field(default=())
    all_images: tuple[dict, ...] = field(default=(), repr=False)  # every image of the JSON (--limit aside)

    @property
    def category_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]


def _find_annotations(data: Path) -> Path:
    if data.is_file():
        return data
    if not data.exists():
        raise InputError(f"{data}: dataset not found")
    for c in _ANN_CANDIDATES:
        if (data / c).is_file():
            return data / c
    jsons = sorted(data.glob("*.json")) or sorted((data / "annotations").glob("instances_*.json"))
    if len(jsons) == 1:
        return jsons[0]
    raise InputError(f"{data}: no COCO annotation JSON found (looked for {', '.join(_ANN_CANDIDATES)})")


def _find_images(ann: Path, data: Path, images: Path | None) -> Path:
    if images is not None:
        if not images.is_dir():
            raise InputError(f"{images}: image folder not found")
        return images
    roots = [data] if data.is_dir() else []
    roots += [ann.parent, ann.parent.parent]
    for root in roots:
        for c in _IMG_CANDIDATES:
            if (root / c).is_dir():
                return root / c
    return ann.parent


def _check_schema(doc: object, path: Path) -> None:
    def bad(msg: str) -> InputError:
        return InputError(f"{path}: not a COCO instances file: {msg}")

    if not isinstance(doc, dict):
        raise bad("top level is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise bad(f"missing or non-list '{key}'")
    if not doc["categories"]:
        raise bad("no categories")
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    img_ids = set()
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "width", "height")):
            raise bad(f"images[{i}] lacks one of id, file_name, width, height")
        if not is_int(im["id"]) or not isinstance(im["file_name"], str):
            raise bad(f"images[{i}] has a non-integer id or a non-string file_name")
        img_ids.add(im["id"])
    if len(img_ids) != len(doc["images"]):
        raise bad("duplicate image ids")
    cat_ids = set()
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise bad(f"categories[{i}] lacks id or name")
        if not is_int(c["id"]):
            raise bad(f"categories[{i}] has a non-integer id")
        cat_ids.add(c["id"])
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or not all(k in a for k in ("image_id", "category_id", "bbox")):
            raise bad(f"annotations[{i}] lacks one of image_id, category_id, bbox")
        if not is_int(a["image_id"]) or not is_int(a["category_id"]):
            raise bad(f"annotations[{i}] has a non-integer image_id or category_id")
        if a["image_id"] not in img_ids:
            raise bad(f"annotations[{i}] refers to unknown image_id {a['image_id']}")
        if a["category_id"] not in cat_ids:
            raise bad(f"annotations[{i}] refers to unknown category_id {a['category_id']}")
        b = a["bbox"]
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
            raise bad(f"annotations[{i}] has a malformed bbox")
        # COCOeval needs these; COCO files always carry them, fill them for hand-made files
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(b[2] * b[3])
        a.setdefault("id", i + 1)


SKIP_MISSING_HINT = "use --skip-missing to evaluate without them"


def load_dataset(data: Path, images: Path | None = None, *, limit: int | None = None,
                 skip_missing: bool = False, missing_hint: str = SKIP_MISSING_HINT) -> Dataset:
    """Read and check the annotation JSON, locate images; `limit` keeps the first N images by id.
    ``missing_hint`` ends the error for images the JSON lists but the folder lacks (the caller's option)."""
    ann = _find_annotations(Path(data))
    try:
        raw = ann.read_bytes()
    except OSError as e:
        raise InputError(f"{ann}: cannot read annotations ({e.strerror or e})") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError(f"{ann}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); "
                         "is the file truncated?") from None
    except UnicodeDecodeError:
        raise InputError(f"{ann}: not a text JSON file") from None
    _check_schema(doc, ann)
    img_dir = _find_images(ann, Path(data), images)
    recs = sorted(doc["images"], key=lambda im: im["id"])
    if limit is not None:
        recs = recs[: max(0, limit)]
    records, missing = [], []
    for im in recs:
        p = img_dir / im["file_name"]
        if not p.is_file():
            missing.append(im["file_name"])
            continue
        records.append(ImageRecord(int(im["id"]), im["file_name"], int(im["width"]), int(im["height"]), p))
    if missing and not skip_missing:
        raise InputError(f"{ann}: {len(missing)} of the {len(recs)} images it lists are not in {img_dir.resolve()} "
                         f"(first: {missing[0]}); {missing_hint}")
    keep = {r.id for r in records}
    if not records:
        raise InputError(f"{ann}: no images to evaluate")
    if not any(a["image_id"] in keep for a in doc["annotations"]):
        scope = "" if len(keep) == len(doc["images"]) else f" on the {len(keep)} images evaluated"
        raise InputError(f"{ann}: no annotations{scope}: nothing to evaluate the detections against")
    gt = dict(doc)
    gt["images"] = [im for im in doc["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    return Dataset(ann, img_dir, gt, tuple(records), tuple(doc["categories"]), tuple(missing),
                   tuple(doc["images"]))


def dataset_hashes(ds: Dataset, workers: int = 4) -> dict:
    """Content hashes: the annotation file, and all evaluated images (names + bytes, in id order)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:  # hashlib releases the GIL
        digests = list(ex.map(sha256_file, [r.path for r in ds.images]))
    h = hashlib.sha256()
    for r, d in zip(ds.images, digests, strict=True):
        h.update(f"{r.id}\0{r.file_name}\0{d}\n".encode())
    ann = sha256_file(ds.annotations_path)
    return {"annotations_sha256": ann, "images_sha256": h.hexdigest(),
            "sha256": hashlib.sha256(f"{ann}{h.hexdigest()}".encode()).hexdigest()}


def size_mismatches(ds: Dataset, workers: int = 4) -> dict:
    """Images whose decoded size differs from the JSON's width/height (read from headers, not pixels).

    Their detections are rescaled to the JSON's frame (where the ground truth lives); the count and a few
    examples go to summary.json and the table notes, whether or not the predictions came from the cache.
    """
    from validator.data.preprocess import decoded_size

    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        sizes = list(ex.map(lambda r: decoded_size(r.path, (r.height, r.width)), ds.images))
    bad = [(r, hw) for r, hw in zip(ds.images, sizes, strict=True) if tuple(hw) != (r.height, r.width)]
    return {"size_mismatch": len(bad),
            "examples": [{"file_name": r.file_name, "json_hw": [r.height, r.width], "decoded_hw": list(hw)}
                         for r, hw in bad[:10]]}


def subset(ds: Dataset, image_ids) -> Dataset:
    """The dataset restricted to ``image_ids`` (kept in the dataset's order): a tune or sensitivity split, a
    Ray shard."""
    keep = set(image_ids)
    images = tuple(r for r in ds.images if r.id in keep)
    gt = {**ds.gt, "images": [im for im in ds.gt["images"] if im["id"] in keep],
          "annotations": [a for a in ds.gt["annotations"] if a["image_id"] in keep]}
    return replace(ds, images=images, gt=gt)
