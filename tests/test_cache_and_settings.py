"""The prediction cache end to end, and the decoding/metric defaults as summary.json records them.

The cache is keyed by everything that changes predictions (model, dataset content, evaluated images, class
map, input transform, every decoding setting): changing any of them must re-run inference, and changing
only how the predictions are scored (``--backend``) or where they are written (``--out``) must not. A hit
gives byte-identical outputs; an unreadable entry is a miss, never a crash.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MODELS
from validator.cli import main as validate_main

DET = MODELS / "shapes-det.onnx"
MODEL = "shapes-det"
LIMIT = "4"
NAMES = ["circle", "triangle", "square", "star", "hexagon", "cross"]  # the det fixture's class order


def _cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = validate_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _run(capsys, data: Path, out: Path, cache: Path, *extra, limit: str = LIMIT) -> str:
    """Run the det ONNX fixture; returns stdout. Asserts exit 0."""
    code, stdout, err = _cli(capsys, "--float", DET, "--data", data, "--limit", limit, "--out", out,
                             "--cache-dir", cache, "--quiet", *extra)
    assert code == 0, err
    return stdout


def _cached(out: Path) -> bool:
    return json.loads((out / "timing.json").read_text())[MODEL]["cached"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _preds(out: Path) -> list[dict]:
    return json.loads((out / "predictions" / f"{MODEL}.json").read_text())


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.jsonl.gz"))


@dataclass(frozen=True)
class Primed:
    data: Path
    out: Path  # the first (cache-missing) run with default settings
    cache: Path  # holds exactly that run's entry
    stdout: str


@pytest.fixture(scope="module")
def primed(shapes_small, tmp_path_factory) -> Primed:
    root = tmp_path_factory.mktemp("cache-e2e")
    out, cache = root / "first", root / "cache"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = validate_main([str(a) for a in ("--float", DET, "--data", shapes_small, "--limit", LIMIT, "--out",
                                               out, "--cache-dir", cache, "--quiet")])
    assert code == 0
    assert _cached(out) is False
    assert len(_entries(cache)) == 1
    return Primed(shapes_small, out, cache, buf.getvalue())


@pytest.fixture()
def cache(primed, tmp_path) -> Path:
    """A private copy of the primed cache (so tests do not see each other's entries)."""
    c = tmp_path / "cache"
    shutil.copytree(primed.cache, c)
    return c


# ------------------------------------------------------------------------------------------------- hits
def test_identical_rerun_hits_and_is_byte_identical(primed, cache, tmp_path, capsys):
    first = {f: (primed.out / f).read_bytes() for f in ("summary.json", f"predictions/{MODEL}.json", "table.csv",
                                                         "per_class.csv")}
    out = tmp_path / "again"
    shutil.copytree(primed.out, out)
    _run(capsys, primed.data, out, cache)  # same folder, same arguments
    assert _cached(out) is True
    for f, raw in first.items():
        assert (out / f).read_bytes() == raw, f
    assert len(_entries(cache)) == 1  # nothing new stored
    # timing of a hit: the times of the run that made the predictions, flagged as cached
    t0, t1 = json.loads((primed.out / "timing.json").read_text()), json.loads((out / "timing.json").read_text())
    assert {k: v for k, v in t0[MODEL].items() if k != "cached"} == {k: v for k, v in t1[MODEL].items()
                                                                      if k != "cached"}


@pytest.mark.parametrize("extra", [["--backend", "pycocotools"], [], ["--workers", "1"]],
                         ids=["backend-pycocotools", "other-out", "workers-1"])
def test_settings_that_do_not_change_predictions_hit(primed, cache, tmp_path, capsys, extra):
    out = tmp_path / "elsewhere" / "out"
    _run(capsys, primed.data, out, cache, *extra)
    assert _cached(out) is True
    assert (out / "predictions" / f"{MODEL}.json").read_bytes() == \
        (primed.out / "predictions" / f"{MODEL}.json").read_bytes()
    assert len(_entries(cache)) == 1
    s0, s1 = _summary(primed.out), _summary(out)
    for k in ("mAP50", "mAP50_95", "AR100"):  # both backends give identical stats
        assert s0["models"][0]["metrics"]["bbox"][k] == s1["models"][0]["metrics"]["bbox"][k]
    if not extra:
        assert (out / "summary.json").read_bytes() == (primed.out / "summary.json").read_bytes()


def test_names_file_in_the_models_own_order_hits(primed, cache, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache, "--names", names)
    assert _cached(out) is True
    assert _preds(out) == _preds(primed.out)


# ----------------------------------------------------------------------------------------------- misses
MISSES = {
    "conf": ["--conf", "0.05"],
    "iou": ["--iou", "0.5"],
    "max-det": ["--max-det", "10"],
    "limit": ["--limit", "3"],
    "agnostic": ["--agnostic"],
    "resize-stretch": ["--resize", "stretch"],
    "input-range": ["--input-range", "-1,1"],
    "metric-compat": ["--metric", "compat"],
    "names-reordered": ["--names", "REVERSED"],
}


@pytest.mark.parametrize("change", list(MISSES))
def test_settings_that_change_predictions_miss(primed, cache, tmp_path, capsys, change):
    extra = list(MISSES[change])
    limit = LIMIT
    if change == "limit":
        limit, extra = extra[1], []
    if change == "names-reordered":
        names = tmp_path / "names.txt"
        names.write_text("\n".join(reversed(NAMES)) + "\n")
        extra = ["--names", names]
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache, *extra, limit=limit)
    assert _cached(out) is False, change
    assert len(_entries(cache)) == 2  # stored under a key of its own
    assert _preds(out) != _preds(primed.out)
    # and that new entry is now a hit
    out2 = tmp_path / "o2"
    _run(capsys, primed.data, out2, cache, *extra, limit=limit)
    assert _cached(out2) is True
    assert (out2 / "predictions" / f"{MODEL}.json").read_bytes() == (out / "predictions" / f"{MODEL}.json").read_bytes()


def test_no_cache_runs_inference_but_still_gives_the_same_predictions(primed, cache, tmp_path, capsys):
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache, "--no-cache")
    assert _cached(out) is False
    assert (out / "predictions" / f"{MODEL}.json").read_bytes() == \
        (primed.out / "predictions" / f"{MODEL}.json").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-dict"])
def test_corrupt_cache_entry_is_a_miss(primed, cache, tmp_path, capsys, damage):
    (entry,) = _entries(cache)
    raw = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"this is not gzip\n" * 10)
    elif damage == "empty":
        entry.write_bytes(b"")
    else:
        entry.write_bytes(gzip.compress(b"[1, 2, 3]"))
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache)
    assert _cached(out) is False
    assert (out / "summary.json").read_bytes() == (primed.out / "summary.json").read_bytes()
    # the entry was rewritten: the next run hits
    _run(capsys, primed.data, tmp_path / "o2", cache)
    assert _cached(tmp_path / "o2") is True
    assert not list(cache.glob("*.tmp"))


def test_cache_hit_keeps_size_mismatch_counts(shapes_small, tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(shapes_small, data)
    for p in sorted((data / "images").glob("*.jpg"))[:2]:
        with Image.open(p) as img:
            img.resize((img.width // 2, img.height // 2)).save(p, quality=95)
    cache = tmp_path / "cache"
    _run(capsys, data, tmp_path / "a", cache)
    _run(capsys, data, tmp_path / "b", cache)
    assert _cached(tmp_path / "a") is False and _cached(tmp_path / "b") is True
    assert _summary(tmp_path / "a")["dataset"]["size_mismatches"]["size_mismatch"] == 2
    assert _summary(tmp_path / "b")["dataset"]["size_mismatches"]["size_mismatch"] == 2
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()


# -------------------------------------------------------------------------------------------- defaults
def test_defaults_recorded_in_summary(primed):
    s = _summary(primed.out)
    expected = {"conf": 0.001, "iou": 0.7, "max_det": 300, "agnostic": False, "resize": "letterbox",
                "metric": "coco", "backend": "faster-coco-eval", "multi_label": False, "clip_boxes": True}
    assert {k: s["settings"][k] for k in expected} == expected
    assert s["metric"] == "coco"
    assert s["settings"]["limit"] == int(LIMIT)
    title = (primed.out / "table.md").read_text().splitlines()[0]
    assert "metric: COCO" in title and "compat" not in title
    assert title in primed.stdout


def _per_image(preds: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for p in preds:
        counts[p["image_id"]] = counts.get(p["image_id"], 0) + 1
    return counts


def test_max_det_caps_detections_per_image(primed, cache, tmp_path, capsys):
    default = _per_image(_preds(primed.out))
    assert max(default.values()) > 2  # the cap below is binding
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache, "--max-det", "2")
    assert _summary(out)["settings"]["max_det"] == 2
    capped = _per_image(_preds(out))
    assert max(capped.values()) <= 2
    assert any(v == 2 for v in capped.values())
    # the kept ones are each image's best
    by_img: dict[int, list[float]] = {}
    for p in _preds(primed.out):
        by_img.setdefault(p["image_id"], []).append(p["score"])
    for p in _preds(out):
        assert p["score"] >= sorted(by_img[p["image_id"]], reverse=True)[1] - 1e-9


def test_conf_threshold_drops_low_scores(primed, cache, tmp_path, capsys):
    assert min(p["score"] for p in _preds(primed.out)) < 0.5
    assert min(p["score"] for p in _preds(primed.out)) > 0.001
    out = tmp_path / "o"
    _run(capsys, primed.data, out, cache, "--conf", "0.5")
    assert _summary(out)["settings"]["conf"] == 0.5
    preds = _preds(out)
    assert preds and all(p["score"] > 0.5 for p in preds)


def test_metric_compat_settings_and_title(primed, cache, tmp_path, capsys):
    out = tmp_path / "o"
    stdout = _run(capsys, primed.data, out, cache, "--metric", "compat")
    s = _summary(out)
    assert s["metric"] == "compat"
    assert s["settings"]["metric"] == "compat"
    assert s["settings"]["multi_label"] is True and s["settings"]["clip_boxes"] is False
    title = (out / "table.md").read_text().splitlines()[0]
    assert "metric: compat" in title and "NOT COCO" in title
    assert title in stdout
    assert "metric: compat" in stdout.splitlines()[-1]
