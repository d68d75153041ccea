"""The output folder and the exit-code contract of `validate`, end to end.

Exit codes: 0 ok · 1 only a failed gate · 2 usage or input error (exactly one stderr line naming the file and
the problem, no traceback) · 3 internal error (one line with the path of a saved traceback) · 130 Ctrl-C.
The output folder is checked before any inference, filled in a staging folder and swapped into place, so a
failed run never leaves a half-written report, never touches an earlier run's report and never deletes a
folder it did not write. Also: default `reports/<timestamp>` folders, dataset problems found up front,
images whose decoded size disagrees with the JSON, and the progress lines CI logs show.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import MODELS
from validator import __version__
from validator.cli import main as validate_main

DET = MODELS / "shapes-det.onnx"
DET8 = MODELS / "shapes-det.int8.tflite"
LIMIT = "4"
PROGRESS_LINE = re.compile(r"^validate: (\d+)/(\d+) images \((\d+)%\), \d+\.\d img/s, (ETA \S+|in \S+)$")


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _crash_dir(tmp_path, monkeypatch) -> Path:
    """Saved tracebacks (exit 3) go to a per-test folder instead of the system temp dir."""
    d = tmp_path / "crash"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _cli(capsys, *args) -> tuple[int, str, str]:
    """In-process `validate`: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = validate_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _subprocess(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "validator.cli", *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=300, cwd=cwd, env=env)


def _one_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _det_args(data: Path, out: Path | None, cache: Path, *extra) -> list:
    args = ["--float", DET, "--data", data, "--limit", LIMIT, "--cache-dir", cache, "--quiet", *extra]
    return args + (["--out", out] if out is not None else [])


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


@pytest.fixture()
def tripwire(monkeypatch) -> list[str]:
    """Records (and fails) any step of the long work: loading the dataset, opening models, inference."""
    called: list[str] = []

    def trip(name):
        def f(*a, **k):
            called.append(name)
            raise AssertionError(f"{name} called before the output/cache folders were checked")

        return f

    monkeypatch.setattr("validator.run.load_dataset", trip("load_dataset"))
    monkeypatch.setattr("validator.run.open_sources", trip("open_sources"))
    monkeypatch.setattr("validator.inference.run_models", trip("run_models"))
    return called


@pytest.fixture()
def earlier(shapes_small, tmp_path, capsys) -> tuple[Path, Path, dict[str, bytes]]:
    """An earlier successful run in tmp_path/o (cache tmp_path/cache): (out, cache, snapshot of out)."""
    out, cache = tmp_path / "o", tmp_path / "cache"
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, cache))
    assert code == 0, err
    return out, cache, _snapshot(out)


# ------------------------------------------------------------------------------------ output/cache checks
def test_out_is_an_existing_file_refused_before_any_work(shapes_small, tmp_path, capsys, tripwire):
    target = tmp_path / "report.txt"
    target.write_text("not a folder\n")
    cache = tmp_path / "cache"
    code, _, err = _cli(capsys, *_det_args(shapes_small, target, cache))
    assert code == 2, err
    _one_line(err, str(target), "existing file")
    assert tripwire == []
    assert target.read_text() == "not a folder\n"
    assert not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crash", "report.txt"]


def test_out_is_an_existing_file_subprocess_stdio(shapes_small, tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("x")
    r = _subprocess(*_det_args(shapes_small, target, tmp_path / "cache"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_line(r.stderr, str(target), "--out")
    assert r.stdout == ""
    assert not (tmp_path / "cache").exists()


def test_out_below_an_existing_file(shapes_small, tmp_path, capsys, tripwire):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, _, err = _cli(capsys, *_det_args(shapes_small, blocker / "sub" / "out", tmp_path / "cache"))
    assert code == 2, err
    _one_line(err, str(blocker), "is a file")
    assert tripwire == []


def test_cache_dir_is_an_existing_file(shapes_small, tmp_path, capsys, tripwire):
    cache = tmp_path / "cache.gz"
    cache.write_bytes(b"\x1f\x8b")
    out = tmp_path / "o"
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, cache))
    assert code == 2, err
    _one_line(err, str(cache), "--cache-dir")
    assert tripwire == []
    assert not out.exists()
    assert cache.read_bytes() == b"\x1f\x8b"


def _chmod_effective(d: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=d)
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


def test_out_inside_a_read_only_folder(shapes_small, tmp_path, capsys, tripwire):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not _chmod_effective(ro):
            pytest.skip("chmod does not stop this user from writing (root)")
        code, _, err = _cli(capsys, *_det_args(shapes_small, ro / "out", tmp_path / "cache"))
        assert code == 2, err
        _one_line(err, str(ro), "not writable")
        assert tripwire == []
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_out_on_a_read_only_filesystem(shapes_small, tmp_path, capsys, tripwire):
    """The same check where even root cannot write: sysfs (Linux) refuses new files."""
    sysfs = Path("/sys")
    if not sysfs.is_dir() or not _chmod_effective(sysfs):
        pytest.skip("no read-only /sys here")
    code, _, err = _cli(capsys, *_det_args(shapes_small, sysfs / "qharness-test-out", tmp_path / "cache"))
    assert code == 2, err
    _one_line(err, "/sys", "not writable")
    assert tripwire == []


def test_out_folder_with_someone_elses_files_is_refused(shapes_small, tmp_path, capsys, tripwire):
    out = tmp_path / "theirs"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("precious\n")
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = _snapshot(out)
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, tmp_path / "cache"))
    assert code == 2, err
    _one_line(err, str(out), "did not write")
    assert tripwire == []
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------- replacing outputs
def test_reusing_out_replaces_the_earlier_runs_files(shapes_small, tmp_path, capsys):
    out, cache = tmp_path / "o", tmp_path / "cache"
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, cache, "--int8", DET8))
    assert code == 0, err
    assert {p.name for p in (out / "predictions").iterdir()} == {"shapes-det.json", "shapes-det.int8.json"}
    (out / "predictions" / "shapes-det.int8.json").touch()
    code, stdout, err = _cli(capsys, *_det_args(shapes_small, out, cache))
    assert code == 0, err
    assert [p.name for p in (out / "predictions").iterdir()] == ["shapes-det.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["shapes-det"]
    assert summary["deltas"] == []
    assert (out / ".qharness").is_file()
    assert "shapes-det.int8" not in (out / "table.md").read_text() and "shapes-det.int8" not in stdout
    assert _leftovers(tmp_path) == []


def test_output_folder_permissions_follow_the_umask(shapes_small, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = _cli(capsys, *_det_args(shapes_small, tmp_path / "o", tmp_path / "cache"))
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "o" / "predictions").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "o").stat().st_mode & 0o777 == 0o755


def test_failed_run_bad_model_leaves_earlier_outputs(shapes_small, tmp_path, capsys, earlier):
    out, cache, before = earlier
    missing = tmp_path / "missing.onnx"
    code, _, err = _cli(capsys, "--float", missing, "--data", shapes_small, "--limit", LIMIT, "--out", out,
                        "--cache-dir", cache, "--quiet")
    assert code == 2, err
    _one_line(err, str(missing))
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


def test_internal_error_late_saves_traceback_and_keeps_earlier_outputs(shapes_small, tmp_path, capsys, earlier,
                                                                       monkeypatch, _crash_dir):
    out, cache, before = earlier

    def boom(summary):
        raise RuntimeError("injected failure\nwhile writing per_class.csv")

    monkeypatch.setattr("validator.report.tables.per_class_csv", boom)
    code, stdout, err = _cli(capsys, *_det_args(shapes_small, out, cache))
    assert code == 3, err
    line = _one_line(err, "internal error", "RuntimeError", "injected failure")
    m = re.search(r"traceback saved to (\S+?);", line)
    assert m, line
    crash = Path(m.group(1))
    assert crash.is_file() and crash.parent == _crash_dir
    text = crash.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: injected failure" in text
    assert "per_class_csv" in text or "boom" in text
    assert stdout == ""
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


def test_ctrl_c_late_exits_130_and_keeps_earlier_outputs(shapes_small, tmp_path, capsys, earlier, monkeypatch):
    out, cache, before = earlier

    def interrupt(summary):
        raise KeyboardInterrupt

    monkeypatch.setattr("validator.report.tables.per_class_csv", interrupt)
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, cache))
    assert code == 130, err
    _one_line(err, "interrupted")
    assert _snapshot(out) == before
    assert _leftovers(tmp_path) == []


def test_ctrl_c_during_inference_leaves_nothing(shapes_small, tmp_path, capsys, monkeypatch):
    import validator.inference as inference

    real = inference.decode
    seen = []

    def decode_then_interrupt(*a, **k):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(inference, "decode", decode_then_interrupt)
    out = tmp_path / "o"
    code, _, err = _cli(capsys, *_det_args(shapes_small, out, tmp_path / "cache"))
    assert code == 130, err
    assert not out.exists()
    assert _leftovers(tmp_path) == []
    assert not list((tmp_path / "cache").glob("*.jsonl.gz*"))  # nothing half-made was cached


# ---------------------------------------------------------------------------------- default output folder
def test_reserve_default_gives_a_new_folder_each_time(tmp_path):
    from validator.report.outputs import MARKER, reserve_default

    base = tmp_path / "reports" / "20250101-120000"
    first, second, third = reserve_default(base), reserve_default(base), reserve_default(base)
    assert first == base
    assert second == base.with_name("20250101-120000-2")
    assert third == base.with_name("20250101-120000-3")
    for d in (first, second, third):
        assert d.is_dir() and [p.name for p in d.iterdir()] == [MARKER]


def test_run_without_out_writes_under_reports(shapes_small, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = _cli(capsys, *_det_args(shapes_small, None, tmp_path / "cache"))
    assert code == 0, err
    runs = [p for p in (tmp_path / "reports").iterdir()]
    assert len(runs) == 1, runs
    run = runs[0]
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", run.name), run.name
    for f in (".qharness", "summary.json", "timing.json", "table.md", "table.csv", "per_class.csv",
              "predictions/shapes-det.json"):
        assert (run / f).is_file(), f
    assert f"Outputs in {Path('reports') / run.name}/" in stdout


def test_two_runs_without_out_in_the_same_second_do_not_collide(shapes_small, tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20250101-120000")
    for _ in range(2):
        code, _, err = _cli(capsys, *_det_args(shapes_small, None, tmp_path / "cache"))
        assert code == 0, err
    runs = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert runs == ["20250101-120000", "20250101-120000-2"]
    for r in runs:
        assert (tmp_path / "reports" / r / "summary.json").is_file()


@pytest.mark.parametrize("failure", ["bad-model", "runtime-error", "ctrl-c"])
def test_failed_run_without_out_leaves_no_reserved_folder(shapes_small, tmp_path, capsys, monkeypatch, failure):
    monkeypatch.chdir(tmp_path)
    model, expected = DET, {"bad-model": 2, "runtime-error": 3, "ctrl-c": 130}[failure]
    if failure == "bad-model":
        model = tmp_path / "missing.onnx"
    else:
        exc = RuntimeError("late") if failure == "runtime-error" else KeyboardInterrupt()

        def fail(summary):
            raise exc

        monkeypatch.setattr("validator.report.tables.per_class_csv", fail)
    code, _, err = _cli(capsys, "--float", model, "--data", shapes_small, "--limit", LIMIT, "--cache-dir",
                        tmp_path / "cache", "--quiet")
    assert code == expected, err
    _one_line(err)
    reports = tmp_path / "reports"
    assert not reports.exists() or list(reports.iterdir()) == []


def test_reports_is_a_file_is_an_input_error(shapes_small, tmp_path, capsys, monkeypatch, tripwire):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").write_text("x")
    code, _, err = _cli(capsys, *_det_args(shapes_small, None, tmp_path / "cache"))
    assert code == 2, err
    _one_line(err, "reports")
    assert tripwire == []


def test_out_dot_in_an_earlier_output_folder(shapes_small, tmp_path, capsys, monkeypatch, earlier):
    out, cache, _ = earlier
    monkeypatch.chdir(out)
    code, _, err = _cli(capsys, *_det_args(shapes_small, Path("."), cache))
    assert code in (0, 2), err
    if code == 2:
        _one_line(err, "--out")


# --------------------------------------------------------------------------------------- dataset problems
def _write_annotations(tmp_path: Path, doc: dict) -> Path:
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(doc))
    return ann


def test_annotations_without_any_annotation(shapes_small, tmp_path, capsys, monkeypatch):
    doc = json.loads((shapes_small / "annotations.json").read_text())
    doc["annotations"] = []
    ann = _write_annotations(tmp_path, doc)
    opened = []
    monkeypatch.setattr("validator.run.open_sources", lambda *a, **k: opened.append(1))
    out = tmp_path / "o"
    code, _, err = _cli(capsys, "--float", DET, "--data", ann, "--images", shapes_small / "images", "--out", out,
                        "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 2, err
    _one_line(err, str(ann), "no annotations")
    assert opened == []  # found before any model is opened
    assert not out.exists() and _leftovers(tmp_path) == []


def test_limit_selecting_only_unannotated_images(shapes_small, tmp_path, capsys):
    doc = json.loads((shapes_small / "annotations.json").read_text())
    first = sorted(im["id"] for im in doc["images"])[:3]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] not in first]
    ann = _write_annotations(tmp_path, doc)
    out = tmp_path / "o"
    code, _, err = _cli(capsys, "--float", DET, "--data", ann, "--images", shapes_small / "images", "--limit", "3",
                        "--out", out, "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 2, err
    _one_line(err, str(ann), "no annotations", "3 images")
    assert not out.exists() and _leftovers(tmp_path) == []
    # the same file with more images evaluated is fine
    code, _, err = _cli(capsys, "--float", DET, "--data", ann, "--images", shapes_small / "images", "--limit", "5",
                        "--out", out, "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 0, err


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_images_smaller_than_the_json_says_are_rescaled(shapes_small, tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "half"
    shutil.copytree(shapes_small, data)
    doc = json.loads((data / "annotations.json").read_text())
    by_id = sorted(doc["images"], key=lambda im: im["id"])
    halved = by_id[:3]
    for im in halved:
        p = data / "images" / im["file_name"]
        with Image.open(p) as img:
            assert img.size == (im["width"], im["height"])
            img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(p, quality=95)

    def run(d: Path, out: Path) -> dict:
        code, _, err = _cli(capsys, "--float", DET, "--data", d, "--limit", "5", "--out", out, "--no-cache",
                            "--quiet")
        assert code == 0, err
        return json.loads((out / "summary.json").read_text())

    orig, half = run(shapes_small, tmp_path / "o-orig"), run(data, tmp_path / "o-half")
    assert orig["dataset"]["size_mismatches"]["size_mismatch"] == 0
    mism = half["dataset"]["size_mismatches"]
    assert mism["size_mismatch"] == 3
    assert [e["file_name"] for e in mism["examples"]] == [im["file_name"] for im in halved]
    for e, im in zip(mism["examples"], halved, strict=True):
        assert e["json_hw"] == [im["height"], im["width"]]
        assert e["decoded_hw"] == [im["height"] // 2, im["width"] // 2]
    for k in ("mAP50", "mAP50_95"):
        a, b = orig["models"][0]["metrics"]["bbox"][k], half["models"][0]["metrics"]["bbox"][k]
        assert abs(a - b) <= 0.02, (k, a, b)
    # the boxes are in the JSON's frame: each halved image's best detection lies where the original one does
    preds_o = json.loads((tmp_path / "o-orig" / "predictions" / "shapes-det.json").read_text())
    preds_h = json.loads((tmp_path / "o-half" / "predictions" / "shapes-det.json").read_text())
    for im in halved:
        best_o = max((p for p in preds_o if p["image_id"] == im["id"]), key=lambda p: p["score"])
        best_h = max((p for p in preds_h if p["image_id"] == im["id"]), key=lambda p: p["score"])
        assert best_o["category_id"] == best_h["category_id"]
        assert _iou(best_o["bbox"], best_h["bbox"]) > 0.8, (best_o, best_h)


# ---------------------------------------------------------------------------------------- version, usage
def test_version():
    r = _subprocess("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"validate (qharness) {__version__}\n"
    assert r.stderr == ""


def test_malformed_predictions_spec_subprocess(shapes_small, tmp_path):
    r = _subprocess("--predictions", "preds.json", "--data", shapes_small, "--out", tmp_path / "o")
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_line(r.stderr, "--predictions preds.json", "NAME=preds.json")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec", ["nameonly", "=preds.json", "name=", " = "])
def test_malformed_predictions_spec(shapes_small, tmp_path, capsys, spec, tripwire):
    code, _, err = _cli(capsys, "--predictions", spec, "--data", shapes_small, "--out", tmp_path / "o")
    assert code == 2, err
    _one_line(err, f"--predictions {spec}", "NAME=preds.json")
    assert tripwire == []


def test_usage_errors_exit_2_not_1(shapes_small):
    for args in (["--float", DET, "--data", shapes_small, "--limit", "0"],
                 ["--float", DET, "--data", shapes_small, "--conf", "1.5"],
                 ["--float", DET, "--data", shapes_small, "--metric", "nope"],
                 ["--float", DET]):
        r = _subprocess(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------- progress
def test_progress_lines_without_a_terminal():
    from validator.progress import Progress

    buf = io.StringIO()
    with Progress(10, "validate", "images", tty=False, every_s=0, stream=buf) as p:
        for _ in range(10):
            p.update()
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue()
    assert len(lines) == 10  # one per update before the end, then the final line
    parsed = [PROGRESS_LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    assert [int(m.group(1)) for m in parsed] == list(range(1, 11))
    assert all(int(m.group(2)) == 10 for m in parsed)
    assert parsed[2].group(3) == "30" and parsed[2].group(4).startswith("ETA ")
    assert lines[2].startswith("validate: 3/10 images (30%), ")
    assert parsed[-1].group(4).startswith("in ")


def test_progress_quiet_prints_nothing():
    from validator.progress import Progress

    for tty in (False, True):
        buf = io.StringIO()
        with Progress(10, "validate", "images", tty=tty, every_s=0, stream=buf, quiet=True) as p:
            for _ in range(10):
                p.update()
        assert buf.getvalue() == ""


def test_progress_interval_is_respected():
    from validator.progress import Progress

    buf = io.StringIO()
    with Progress(10, "validate", "images", tty=False, every_s=3600, stream=buf) as p:
        for _ in range(10):
            p.update()
    assert buf.getvalue() == ""  # a fast job prints nothing at all, not even the final line


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_ci_env_beats_a_terminal(monkeypatch):
    from validator.progress import Progress

    monkeypatch.setenv("CI", "true")
    assert Progress(10, "validate", stream=_FakeTTY()).tty is False
    monkeypatch.delenv("CI")
    assert Progress(10, "validate", stream=_FakeTTY()).tty is True
    assert Progress(10, "validate", stream=io.StringIO()).tty is False


@pytest.mark.parametrize("ci", [True, False])
def test_cli_progress_on_stderr(shapes_small, tmp_path, capsys, monkeypatch, ci):
    """A CLI run on a terminal: plain lines with img/s under CI=true (a CI log), a tqdm bar otherwise.

    The line interval is a constructor default (LINE_EVERY_S is read when the module is imported), so the
    Progress class used by the inference loop is replaced by one with every_s=0.
    """
    import validator.inference as inference
    from validator.progress import Progress

    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(inference, "Progress", functools.partial(Progress, every_s=0))
    fake = _FakeTTY()
    capsys.readouterr()
    monkeypatch.setattr(sys, "stderr", fake)
    code = validate_main([str(a) for a in ("--float", DET, "--data", shapes_small, "--limit", LIMIT, "--out",
                                           tmp_path / "o", "--no-cache")])
    assert code == 0, fake.getvalue()
    err = fake.getvalue()
    if ci:
        assert "\r" not in err
        lines = [ln for ln in err.splitlines() if "img/s" in ln]
        assert lines, err
        assert all(PROGRESS_LINE.match(ln) for ln in lines), lines
        assert lines[-1].startswith(f"validate: {LIMIT}/{LIMIT} images (100%)")
    else:
        assert "\r" in err and "img" in err


def test_two_runs_into_the_same_out_the_second_exits_2_naming_the_holder(shapes_small, tmp_path):
    """Both used to exit 0 and print "Outputs in ..."; one's results were silently gone."""
    from validator.report.outputs import OutputDir

    out = tmp_path / "shared"
    first = OutputDir(out)
    first.check()  # a run in progress holds the folder
    args = [sys.executable, "-m", "validator.cli", "--model", str(MODELS / "shapes-det.onnx"), "--data",
            str(shapes_small), "--limit", "2", "--out", str(out), "--quiet", "--no-cache"]
    r = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and str(out) in line and f"pid {os.getpid()}" in line
    assert not out.exists()  # the second run wrote nothing
    first.abort()
    r = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "summary.json").is_file() and not list(tmp_path.glob(".*lock"))


def test_every_long_stage_prints_progress_in_ci_logs(shapes_small, tmp_path, monkeypatch, capsys):
    """The progress line stopped after inference: metrics, the gate's intervals and the report print too."""
    import validator.progress

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(validator.progress, "LINE_EVERY_S", 0.0)
    gate = tmp_path / "g.toml"
    gate.write_text('[bootstrap]\nresamples = 200\nseed = 1\n[[check]]\nkind = "max_drop"\nmetric = "mAP50"\n'
                    'limit = 100.0\n')
    code = validate_main([str(a) for a in ("--float", DET, "--int8", MODELS / "shapes-det.int8.tflite", "--data",
                                           shapes_small, "--limit", LIMIT, "--out", tmp_path / "o", "--gate", gate,
                                           "--no-cache")])
    assert code == 0
    err = capsys.readouterr().err
    for stage, unit in (("validate", "images"), ("validate: metrics", "evaluations"),
                        ("validate: gate intervals", "resamples"), ("validate: report", "sections")):
        lines = [ln for ln in err.splitlines() if ln.startswith(f"{stage}: ") and f" {unit} (" in ln]
        assert lines and re.search(r"\(100%\).*in \d+", lines[-1]), (stage, err)
