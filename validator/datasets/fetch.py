"""Checksummed, resumable dataset downloads driven by small JSON recipes.

Why: COCO val2017 is ~1 GB over plain HTTP from a server that drops connections; a fetch must resume,
must never hand a corrupt archive to the evaluator, and must cost nothing (no network, no rehashing)
when the dataset is already in place.

A recipe is data, shipped as package data in ``validator/datasets/recipes/<name>.json`` (so an installed
wheel carries it), or any JSON file passed by path::

    {
      "name": "coco-val2017",
      "description": "one line for humans",
      "files": [
        {
          "url": "http://images.cocodataset.org/zips/val2017.zip",
          "filename": "val2017.zip",   # optional, defaults to the URL's last path segment
          "sha256": "<64 hex>",        # required: files without a published checksum are refused
          "bytes": 815585330,          # optional, lets a truncated or oversized download fail early
          "extract": true,             # optional (false): unzip into OUT
          "extract_only": ["a/b.json"],  # optional: unzip just these members (skip 700 MB of train json)
          "source": "where the checksum was published"
        }
      ],
      "images": "val2017",                                 # optional folder under OUT, checked at the end
      "annotations": "annotations/instances_val2017.json"  # file under OUT, checked and returned
    }

Layout under OUT: ``downloads/<filename>.part`` while downloading (resumed with an HTTP Range request),
``downloads/<filename>`` once verified, ``downloads/<filename>.sha256`` caching the verified hash keyed by
size and mtime, ``downloads/<filename>.extracted`` recording the archive hash and its member list. An
archive whose marker matches and whose members all exist is skipped entirely, so the zips may be deleted
after a successful fetch.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import json
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

CHUNK = 1 << 20  # 1 MiB reads: small enough for smooth progress, large enough to keep syscalls rare
TIMEOUT_S = 60.0  # per socket operation, not per file
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class FetchError(Exception):
    """A fetch failed for a reason the user can act on; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class RecipeFile:
    url: str
    filename: str
    sha256: str
    bytes: int | None = None
    extract: bool = False
    extract_only: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    files: tuple[RecipeFile, ...]
    annotations: str
    images: str | None = None
    description: str = ""


def fetch(name_or_recipe_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
          base_url: str | None = None, progress: bool = False) -> Path:
    """Download, verify and extract a recipe's files into ``out``; return the annotation JSON path.

    ``base_url`` is a mirror: each file is fetched from ``base_url/<filename>`` instead of its URL.
    """
    recipe = load_recipe(name_or_recipe_path)
    out = Path(out)
    downloads = out / "downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
        for f in recipe.files:
            url = f"{base_url.rstrip('/')}/{f.filename}" if base_url else f.url
            if f.extract and _extracted(downloads, f, out):
                continue
            archive = _download(url, f, downloads, progress)
            if f.extract:
                _extract(archive, f, out, progress)
    except OSError as e:  # disk full, permissions, ...: anything not already turned into a FetchError
        where = f" at {e.filename}" if e.filename else ""
        raise FetchError(f"disk error{where}: {e.strerror or e}") from e

    if recipe.images and not (out / recipe.images).is_dir():
        raise FetchError(f"recipe {recipe.name}: images folder {out / recipe.images} is missing after "
                         "extraction")
    ann = out / recipe.annotations
    if not ann.is_file():
        raise FetchError(f"recipe {recipe.name}: annotation file {ann} is missing after extraction")
    return ann


# --- recipes ---------------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package."""
    root = importlib.resources.files("validator.datasets") / "recipes"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """Load and validate a shipped recipe by name, or a recipe JSON file by path."""
    s = os.fspath(name_or_path)
    if s.endswith(".json") or os.sep in s or "/" in s:
        where = s
        try:
            text = Path(s).read_text(encoding="utf-8")
        except OSError as e:
            raise FetchError(f"cannot read recipe {s}: {e.strerror or e}") from e
    else:
        where = f"recipe {s}"
        res = importlib.resources.files("validator.datasets") / "recipes" / f"{s}.json"
        if not res.is_file():
            raise FetchError(f"unknown dataset recipe {s!r} (known: {', '.join(recipe_names()) or 'none'})")
        text = res.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FetchError(f"{where}: invalid JSON: {e}") from e
    return _parse_recipe(data, where)


def _parse_recipe(data: Any, where: str) -> Recipe:
    def bad(msg: str) -> FetchError:
        return FetchError(f"{where}: invalid recipe: {msg}")

    if not isinstance(data, dict):
        raise bad("top level must be an object")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise bad("'files' must be a non-empty list")
    parsed: list[RecipeFile] = []
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("url"), str) or not f["url"]:
            raise bad(f"files[{i}] needs a 'url' string")
        filename = f.get("filename") or PurePosixPath(urlsplit(f["url"]).path).name
        if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename \
                or filename in (".", ".."):
            raise bad(f"files[{i}] has an unusable filename {filename!r}")
        sha = f.get("sha256")
        if sha is None:
            raise FetchError(f"{where}: {filename} has no sha256 in the recipe; refusing to download "
                             "unverified data")
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha.lower()):
            raise bad(f"{filename}: sha256 must be 64 hex digits, got {sha!r}")
        size = f.get("bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise bad(f"{filename}: 'bytes' must be a non-negative integer")
        only = f.get("extract_only")
        if only is not None and (not isinstance(only, list) or not only
                                 or not all(isinstance(m, str) and m for m in only)):
            raise bad(f"{filename}: 'extract_only' must be a non-empty list of member names")
        parsed.append(RecipeFile(f["url"], filename, sha.lower(), size, bool(f.get("extract", False)),
                                 tuple(only) if only is not None else None))
    names = [f.filename for f in parsed]
    if len(set(names)) != len(names):
        raise bad("two files share a filename")
    ann, images = data.get("annotations"), data.get("images")
    for key, val in (("annotations", ann), ("images", images)):
        if key == "images" and val is None:
            continue
        if not isinstance(val, str) or not val or _unsafe_member(val):
            raise bad(f"'{key}' must be a relative path inside the output folder")
    return Recipe(name=str(data.get("name") or where), files=tuple(parsed), annotations=ann,
                  images=images, description=str(data.get("description", "")))


# --- download --------------------------------------------------------------------------------------


def _download(url: str, f: RecipeFile, downloads: Path, progress: bool) -> Path:
    """Return ``downloads/<filename>`` verified against the recipe, downloading only what is missing."""
    final = downloads / f.filename
    if final.is_file():
        if _cached_sha256(final) == f.sha256:
            return final
        final.unlink()  # corrupted since it was verified, or the recipe changed: fetch it again
        _sidecar(final).unlink(missing_ok=True)

    part = downloads / f"{f.filename}.part"
    offset = part.stat().st_size if part.is_file() else 0
    if f.bytes is not None and offset > f.bytes:
        part.unlink()
        offset = 0
    digest = hashlib.sha256()
    if offset:
        _hash_into(part, digest)
    if f.bytes is None or offset < f.bytes:
        digest = _stream(url, f, part, offset, digest, progress)

    size = part.stat().st_size
    if f.bytes is not None and size < f.bytes:
        raise FetchError(f"download of {f.filename} from {url} stopped at {size} of {f.bytes} bytes; "
                         "run again to resume")
    actual = digest.hexdigest()
    if actual != f.sha256:
        part.unlink()
        raise FetchError(f"checksum mismatch for {f.filename} from {url}: expected sha256 {f.sha256}, "
                         f"got {actual}; the download was deleted, run again to retry")
    os.replace(part, final)
    _write_sidecar(final, actual)
    return final


def _stream(url: str, f: RecipeFile, part: Path, offset: int, digest: Any, progress: bool) -> Any:
    """Append the rest of ``url`` to ``part`` from ``offset``; return the digest of the whole ``part``.

    Hashing while streaming means a resumed 1 GB download is read from disk once, not twice.
    """
    headers = {"User-Agent": "qharness-fetch/1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the .part is already whole (or wrong)
            return digest
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (URLError, OSError, http.client.HTTPException) as e:
        raise FetchError(f"cannot reach {url}: {_reason(e)}") from None
    except ValueError as e:  # urllib's "unknown url type" and friends
        raise FetchError(f"invalid URL {url!r}: {e}") from None

    with resp:
        status = getattr(resp, "status", None)
        length = resp.headers.get("Content-Length")
        if offset and status != 206:  # the server ignored Range: start over from byte zero
            offset = 0
            digest = hashlib.sha256()
        total = offset + int(length) if length and length.isdigit() else None
        if f.bytes is not None and total is not None and total != f.bytes:
            raise FetchError(f"{url} has {total} bytes but the recipe expects {f.bytes} for {f.filename}")
        with open(part, "ab" if offset else "wb") as fh, _bar(progress, total or f.bytes, offset,
                                                               f.filename) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise FetchError(f"download of {f.filename} from {url} interrupted: {_reason(e)}; "
                                     "run again to resume") from None
                if not chunk:
                    break
                try:
                    fh.write(chunk)
                except OSError as e:
                    raise FetchError(f"cannot write {part}: {e.strerror or e}") from None
                digest.update(chunk)
                bar.update(len(chunk))
    return digest


def _reason(e: BaseException) -> str:
    r = getattr(e, "reason", None) or e
    return str(getattr(r, "strerror", None) or r) or type(r).__name__


class _Quiet:
    def update(self, n: int) -> None:
        pass


@contextmanager
def _bar(progress: bool, total: int | None, initial: int, desc: str, unit: str = "B") -> Iterator[Any]:
    """A tqdm bar (bytes by default) when asked for, else a no-op with the same ``update``."""
    if not progress:
        yield _Quiet()
        return
    from tqdm import tqdm

    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    with tqdm(total=total, initial=initial, unit=unit, desc=desc, **scale) as bar:
        yield bar


def _hash_into(path: Path, digest: Any) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, from the sidecar when size and mtime still match (no rehash of 1 GB)."""
    st = path.stat()
    try:
        cached = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        if cached["size"] == st.st_size and cached["mtime_ns"] == st.st_mtime_ns:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    _hash_into(path, digest)
    _write_sidecar(path, digest.hexdigest())
    return digest.hexdigest()


def _write_sidecar(path: Path, sha: str) -> None:
    st = path.stat()
    _write_json(_sidecar(path), {"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


# --- extraction ------------------------------------------------------------------------------------


def _marker(downloads: Path, f: RecipeFile) -> Path:
    return downloads / f"{f.filename}.extracted"


def _extracted(downloads: Path, f: RecipeFile, out: Path) -> bool:
    """True when this exact archive was extracted before and all its files are still there."""
    try:
        m = json.loads(_marker(downloads, f).read_text(encoding="utf-8"))
        return m["sha256"] == f.sha256 and all((out / name).is_file() for name in m["members"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _unsafe_member(name: str) -> bool:
    p = name.replace("\\", "/")
    return p.startswith("/") or bool(re.match(r"[A-Za-z]:", p)) or ".." in p.split("/")


def _extract(archive: Path, f: RecipeFile, out: Path, progress: bool) -> None:
    """Unzip into ``out`` after checking every member stays inside it; then write the marker."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if f.extract_only is not None:
                missing = sorted(set(f.extract_only) - {i.filename for i in infos})
                if missing:
                    raise FetchError(f"{f.filename} has no member {missing[0]!r} named in extract_only")
                infos = [i for i in infos if i.filename in f.extract_only]
            for info in infos:
                if _unsafe_member(info.filename):
                    raise FetchError(f"{f.filename}: refusing to extract unsafe member {info.filename!r} "
                                     "(absolute path or '..')")
            with _bar(progress, len(infos), 0, f"extract {f.filename}", "file") as bar:
                for info in infos:
                    zf.extract(info, out)
                    bar.update(1)
    except zipfile.BadZipFile as e:
        raise FetchError(f"{archive} is not a valid zip archive: {e}") from None
    except OSError as e:
        raise FetchError(f"cannot extract {f.filename} into {out}: {e.strerror or e}") from None
    members = [i.filename for i in infos if not i.is_dir()]
    _write_json(_marker(archive.parent, f), {"sha256": f.sha256, "members": members})
