"""Calibration images that are also evaluated: counted by content, so a number is never quietly optimistic.

A quantizer manifest lists the images its ranges were calibrated on (``calibration.images`` under
``calibration.source``). If some of them are evaluated again, the INT8 model's numbers are optimistic. File
names alone mislead both ways (``000000000001.jpg`` names a different image in every generated folder; a copy
under a new name is the same image), so the count is by content: sha256 of the bytes, hashing only evaluated
files whose size equals a calibration file's (a stat per image; COCO's 5000 images cost no read unless sizes
meet). Where the calibration files cannot be read any more, file names count only when the calibration
source is this very dataset's folder; otherwise the overlap is not known (``evaluated`` None) and says so.
"""

from __future__ import annotations

from pathlib import Path

from validator.hashing import sha256_file


def _sha(p: Path) -> str | None:
    try:
        return sha256_file(p)
    except OSError:
        return None


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None


def _is_this_dataset(src: Path, ds) -> bool:
    src = src.resolve()
    return src in {ds.images_dir.resolve(), ds.images_dir.resolve().parent, ds.annotations_path.resolve(),
                   ds.annotations_path.resolve().parent}


def calibration_overlap(manifest: dict | None, ds) -> dict | None:
    """``{calibration_images, hashed, evaluated_by_name, evaluated_by_content, evaluated, by}`` for a variant's
    manifest against dataset ``ds``; None when the manifest lists no calibration images. ``evaluated`` is the
    content count when the calibration files could be read (``by`` says how it was counted; None: unknown)."""
    cal = (manifest or {}).get("calibration") or {}
    names, source = cal.get("images") or [], cal.get("source")
    if not names:
        return None
    cal_hashes: dict[int, set[str]] = {}
    if source:
        root = Path(source)
        folder = root / "images" if (root / "images").is_dir() else root
        for n in names:
            p = folder / n
            size, h = _size(p), _sha(p)
            if size is not None and h:
                cal_hashes.setdefault(size, set()).add(h)
    eval_names = {r.file_name for r in ds.images} | {Path(r.file_name).name for r in ds.images}
    by_name = sum(1 for n in names if n in eval_names or Path(n).name in eval_names)
    by_content = None
    if cal_hashes:
        by_content = 0
        for r in ds.images:
            size = _size(Path(r.path))
            if size in cal_hashes and _sha(Path(r.path)) in cal_hashes[size]:
                by_content += 1
    if by_content is not None:
        evaluated, by = by_content, "content (sha256)"
    elif source and _is_this_dataset(Path(source), ds):  # the files are gone, but they were this dataset's
        evaluated, by = by_name, "file name (calibration files not readable; same dataset folder)"
    else:  # a name alone says nothing about another folder's image
        evaluated, by = None, "not checked: the calibration files are not readable"
    return {"calibration_images": len(names), "hashed": sum(len(v) for v in cal_hashes.values()),
            "evaluated_by_name": by_name, "evaluated_by_content": by_content, "evaluated": evaluated, "by": by}
