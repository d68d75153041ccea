"""``validator.datasets.fetch`` against a local HTTP server: resume, skip, checksums, safe unzip, errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from validator.datasets.fetch import FetchError, fetch, load_recipe

REPO = Path(__file__).resolve().parents[1]
ANN = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 4, "height": 4}],
       "annotations": [], "categories": [{"id": 1, "name": "thing"}]}


class Server(ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes); logs (path, Range header, bytes sent) of every request.

    The entry is logged before any byte of the response is sent: the client returns as soon as it has the
    whole response, so a test that reads ``log`` right after ``fetch`` must find the entry already there.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.honour_range = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        rng = self.headers.get("Range")
        if body is None:
            self._error(rng, 404, "Not Found")
            return
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        start = int(m.group(1)) if m and self.server.honour_range else 0
        if start >= len(body) and start:
            self._error(rng, 416, "Range Not Satisfiable")
            return
        chunk = body[start:]
        self.server.log.append((self.path, rng, len(chunk)))  # before sending: see Server
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk)

    def _error(self, rng: str | None, code: int, message: str) -> None:
        self.server.log.append((self.path, rng, 0))  # before sending: see Server
        self.send_error(code, message)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A URL on a port that is bound but not listening: connections are refused, deterministically."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def good_zip() -> bytes:
    # Incompressible padding makes the archive big enough to split for the resume test.
    jpg = b"\xff\xd8\xff\xe0" + hashlib.sha256(b"x").digest() * 64
    return make_zip({"images/000000000001.jpg": jpg, "annotations/instances.json": json.dumps(ANN).encode()})


def write_recipe(tmp_path: Path, url: str, data: bytes, *, sha256: str | None = None,
                 filename: str = "tiny.zip", **extra: object) -> Path:
    entry = {"url": f"{url}/{filename}", "filename": filename, "bytes": len(data), "extract": True,
             "sha256": hashlib.sha256(data).hexdigest() if sha256 is None else sha256, **extra}
    recipe = {"name": "tiny", "description": "test", "files": [entry], "images": "images",
              "annotations": "annotations/instances.json"}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(recipe))
    return path


def test_good_zip_is_extracted_and_rerun_makes_no_request(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    recipe, out = write_recipe(tmp_path, server.url, data), tmp_path / "out"

    ann = fetch(recipe, out)

    assert ann == out / "annotations" / "instances.json"
    assert json.loads(ann.read_text()) == ANN
    assert (out / "images" / "000000000001.jpg").is_file()
    assert (out / "downloads" / "tiny.zip").read_bytes() == data
    assert not (out / "downloads" / "tiny.zip.part").exists()
    assert [p for p, _, _ in server.log] == ["/tiny.zip"]

    assert fetch(recipe, out) == ann
    assert len(server.log) == 1, "a re-run on a complete dataset must not touch the network"

    # Even with the archive gone (deleted to save space) nothing is downloaded again...
    (out / "downloads" / "tiny.zip").unlink()
    assert fetch(recipe, out) == ann
    assert len(server.log) == 1
    # ...but a missing extracted file brings the archive back.
    (out / "images" / "000000000001.jpg").unlink()
    assert fetch(recipe, out) == ann
    assert (out / "images" / "000000000001.jpg").is_file()
    assert len(server.log) == 2


def test_verified_archive_is_not_rehashed(server: Server, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    recipe, out = write_recipe(tmp_path, server.url, data), tmp_path / "out"
    fetch(recipe, out)
    (out / "downloads" / "tiny.zip.extracted").unlink()  # force re-extraction, archive still present

    import validator.datasets.fetch as mod

    def no_hash(*a: object) -> None:
        raise AssertionError("archive was rehashed although its sidecar matches size and mtime")

    monkeypatch.setattr(mod, "_hash_into", no_hash)
    assert fetch(recipe, out).is_file()
    assert len(server.log) == 1


def test_base_url_mirror_replaces_recipe_url(server: Server, dead_url: str, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/mirror/tiny.zip"] = data
    recipe = write_recipe(tmp_path, dead_url, data)
    assert fetch(recipe, tmp_path / "out", base_url=server.url + "/mirror/").is_file()
    assert [p for p, _, _ in server.log] == ["/mirror/tiny.zip"]


def test_bad_checksum_names_file_and_both_hashes_and_deletes_download(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    wrong = "0" * 64
    out = tmp_path / "out"
    with pytest.raises(FetchError) as ei:
        fetch(write_recipe(tmp_path, server.url, data, sha256=wrong), out)
    msg = str(ei.value)
    assert "tiny.zip" in msg and wrong in msg and hashlib.sha256(data).hexdigest() in msg
    assert "\n" not in msg
    assert sorted(p.name for p in (out / "downloads").iterdir()) == []
    assert not (out / "images").exists()


def test_server_down_is_one_line_cannot_reach(dead_url: str, tmp_path: Path) -> None:
    data = good_zip()
    with pytest.raises(FetchError) as ei:
        fetch(write_recipe(tmp_path, dead_url, data), tmp_path / "out")
    msg = str(ei.value)
    assert msg.startswith(f"cannot reach {dead_url}/tiny.zip: ")
    assert "refused" in msg.lower() and "\n" not in msg


def test_resume_sends_range_and_verifies(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    out = tmp_path / "out"
    half = len(data) // 2
    (out / "downloads").mkdir(parents=True)
    (out / "downloads" / "tiny.zip.part").write_bytes(data[:half])

    fetch(write_recipe(tmp_path, server.url, data), out)

    assert server.log == [("/tiny.zip", f"bytes={half}-", len(data) - half)]
    assert (out / "downloads" / "tiny.zip").read_bytes() == data
    assert (out / "images" / "000000000001.jpg").is_file()


def test_resume_restarts_when_server_ignores_range(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    server.honour_range = False
    out = tmp_path / "out"
    (out / "downloads").mkdir(parents=True)
    (out / "downloads" / "tiny.zip.part").write_bytes(data[:100])

    fetch(write_recipe(tmp_path, server.url, data), out)

    assert server.log == [("/tiny.zip", "bytes=100-", len(data))]
    assert (out / "downloads" / "tiny.zip").read_bytes() == data


def test_http_404_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^http://127\.0\.0\.1:\d+/tiny\.zip: HTTP 404 Not Found$"):
        fetch(write_recipe(tmp_path, server.url, good_zip()), tmp_path / "out")


@pytest.mark.parametrize("evil", ["../evil", "/abs/evil", "images/../../evil"])
def test_zip_escaping_the_output_folder_is_rejected(server: Server, tmp_path: Path, evil: str) -> None:
    data = make_zip({"images/a.jpg": b"ok", evil: b"pwned"})
    server.files["/tiny.zip"] = data
    out = tmp_path / "deep" / "out"
    with pytest.raises(FetchError, match="unsafe member"):
        fetch(write_recipe(tmp_path, server.url, data), out)
    assert not (out / "images").exists(), "nothing may be extracted from a rejected archive"
    assert not list(tmp_path.rglob("evil"))


def test_extract_only_takes_just_the_named_members(server: Server, tmp_path: Path) -> None:
    data = make_zip({"images/1.jpg": b"j", "annotations/instances.json": b"{}", "annotations/train.json": b"x"})
    server.files["/tiny.zip"] = data
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, server.url, data,
                          extract_only=["images/1.jpg", "annotations/instances.json"])
    assert fetch(recipe, out).is_file()
    assert not (out / "annotations" / "train.json").exists()


def test_missing_annotation_after_extraction_is_an_error(server: Server, tmp_path: Path) -> None:
    data = make_zip({"images/1.jpg": b"j"})
    server.files["/tiny.zip"] = data
    with pytest.raises(FetchError, match="annotation file .*instances.json is missing"):
        fetch(write_recipe(tmp_path, server.url, data), tmp_path / "out")


def test_recipe_without_checksum_is_refused(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    recipe = write_recipe(tmp_path, server.url, data)
    doc = json.loads(recipe.read_text())
    doc["files"][0]["sha256"] = None
    recipe.write_text(json.dumps(doc))
    with pytest.raises(FetchError, match="tiny.zip has no sha256"):
        fetch(recipe, tmp_path / "out")
    assert server.log == []


@pytest.mark.parametrize("name", ["no-such-dataset", "missing/recipe.json"])
def test_unknown_recipe_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(FetchError, match="recipe"):
        fetch(name, tmp_path / "out")


def test_shipped_coco_recipe_has_checksums() -> None:
    r = load_recipe("coco-val2017")
    assert [f.filename for f in r.files] == ["val2017.zip", "annotations_trainval2017.zip"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", f.sha256) for f in r.files)
    assert all(f.bytes and f.bytes > 100_000_000 for f in r.files)
    assert r.images == "val2017" and r.annotations == "annotations/instances_val2017.json"
    raw = json.loads((REPO / "validator/datasets/recipes/coco-val2017.json").read_text())
    assert all(f.get("source") for f in raw["files"]), "every checksum must say where it was published"


def run_cli(recipe: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "validator.datasets", "fetch", str(recipe), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_server_down_exits_2_with_one_line(dead_url: str, tmp_path: Path) -> None:
    r = run_cli(write_recipe(tmp_path, dead_url, good_zip()), tmp_path / "out")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach "), r.stderr
    assert r.stdout == ""


def test_cli_success_prints_annotation_path(server: Server, tmp_path: Path) -> None:
    data = good_zip()
    server.files["/tiny.zip"] = data
    out = tmp_path / "out"
    r = run_cli(write_recipe(tmp_path, server.url, data), out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out / "annotations" / "instances.json")
