"""Run history: append and read back, last accepted run as a gate baseline, concurrent writers, trends."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys

import pytest

from tests.test_gate import INT8_BOX, gate, make_summary
from validator.errors import InputError
from validator.gate import evaluate_gate, history


def rec(summary=None, *, time="2025-06-01T02:00:00Z", verdict="passed", **kw):
    s = make_summary() if summary is None else summary
    return history.record_from_summary(s, time=time, verdict=verdict, commit=kw.pop("commit", "c0ffee" * 6 + "abcd"),
                                       **kw)


def test_flatten_metrics_keys_and_values():
    flat = history.flatten_metrics(make_summary())
    assert flat["int8/bbox/mAP50_95"] == 0.46
    assert flat["float/bbox/mAP50"] == 0.70
    assert flat["int8/bbox/AP_small"] is None  # undefined is kept, as NULL
    assert flat["int8/bbox/class/3/AP50_95"] == 0.42
    assert flat["delta/int8/bbox/mAP50_95"] == -4.0
    assert flat["delta/int8/bbox/mean_recall"] == -0.5
    assert flat["delta/int8/bbox/class/2/AP50"] == -20.0
    assert flat["delta/int8/changed_images"] == 7.0
    assert not any(k.endswith("/per_class") or k.endswith("/name") for k in flat)


def test_append_and_read_back(tmp_path):
    db = tmp_path / "h.sqlite"
    text = json.dumps(make_summary(), indent=2) + "\n"
    v = evaluate_gate(gate({"kind": "max_drop", "metric": "mAP50_95", "limit": 3}), make_summary())
    ids = [history.append(db, rec(time="2025-06-01T02:00:00Z", summary_text=text)),
           history.append(db, rec(time="2025-06-02T02:00:00Z", verdict=v, extra={"job": "nightly"})),
           history.append(db, rec(time="2025-06-03T02:00:00Z", verdict=None, commit=None)),
           history.append(db, rec(time="2025-06-04T02:00:00Z", verdict="failed", accepted=True))]
    assert ids == [1, 2, 3, 4]
    rs = history.runs(db)
    assert [r["id"] for r in rs] == [1, 2, 3, 4]
    assert [(r["verdict"], r["accepted"]) for r in rs] == [("passed", True), ("failed", False), ("none", False),
                                                           ("failed", True)]  # accepted by hand
    r1, r2, r3, _ = rs
    assert r1["time"] == "2025-06-01T02:00:00Z" and r1["commit"] == "c0ffee" * 6 + "abcd" and r3["commit"] is None
    assert r1["models"] == {"float": "a" * 64, "int8": "b" * 64} and r1["dataset_sha256"] == "d" * 64
    assert r1["metric"] == "coco" and r1["gate"] is None
    assert r1["metrics"] == history.flatten_metrics(make_summary())
    assert r2["gate"]["passed"] is False and r2["gate"]["results"][0]["value"] == 4.0
    assert r2["extra"] == {"job": "nightly"}
    assert [r["id"] for r in history.runs(db, limit=2)] == [3, 4]  # the newest two, oldest first
    assert history.runs(db, limit=1, with_summary=True)[0]["summary"] == make_summary()
    con = sqlite3.connect(db)
    assert dict(con.execute("SELECT key, value FROM meta"))["schema_version"] == "1"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    stored = con.execute("SELECT summary FROM runs WHERE id = 1").fetchone()[0]
    con.close()
    assert stored == text  # the summary.json text as written, byte for byte


def test_new_metric_names_need_no_schema_change(tmp_path):
    db = tmp_path / "h.sqlite"
    history.append(db, rec())
    s = make_summary()
    s["models"][1]["metrics"]["bbox"]["brand_new"] = 0.123
    history.append(db, rec(s, time="2025-06-02T02:00:00Z"))
    assert history.runs(db)[1]["metrics"]["int8/bbox/brand_new"] == 0.123
    assert "int8/bbox/brand_new" not in history.runs(db)[0]["metrics"]


def test_bad_records_are_caller_bugs(tmp_path):
    db = tmp_path / "h.sqlite"
    with pytest.raises(ValueError, match="not ISO 8601"):
        history.append(db, rec(time="yesterday"))
    with pytest.raises(ValueError, match="not UTC"):
        history.append(db, rec(time="2025-06-01T02:00:00+02:00"))
    with pytest.raises(ValueError, match="verdict"):
        history.append(db, {**rec(), "verdict": "maybe"})
    assert not db.exists()


def test_last_accepted_is_the_baseline(tmp_path):
    db = tmp_path / "h.sqlite"
    assert history.append(db, rec(make_summary({**INT8_BOX, "mAP50_95": 0.49}))) == 1
    assert history.append(db, rec(make_summary({**INT8_BOX, "mAP50_95": 0.48}), time="2025-06-02T02:00:00Z")) == 2
    history.append(db, rec(make_summary({**INT8_BOX, "mAP50_95": 0.30}), time="2025-06-03T02:00:00Z",
                           verdict="failed"))
    history.append(db, rec(make_summary(dataset="e" * 64), time="2025-06-04T02:00:00Z"))  # another dataset
    now = make_summary()  # int8 at 0.46
    base = history.last_accepted(db, like=now)
    assert base == make_summary({**INT8_BOX, "mAP50_95": 0.48})  # run 2: run 3 failed, run 4 is another dataset
    assert history.last_accepted_run(db, like=now)["id"] == 2
    assert history.last_accepted_run(db)["id"] == 4  # no filter: the newest accepted
    assert history.last_accepted(db, dataset_sha256="f" * 64) is None
    assert history.last_accepted(db, models=["int8", "other"]) is None
    assert history.last_accepted(db, metric="compat") is None
    r = evaluate_gate(gate({"kind": "max_regression", "metric": "mAP50_95", "limit": 1}), now, baseline=base)
    assert (r.results[0].value, r.results[0].passed) == (2.0, False)


def test_last_accepted_none_when_nothing_accepted(tmp_path):
    db = tmp_path / "h.sqlite"
    history.append(db, rec(verdict="failed"))
    history.append(db, rec(verdict=None))
    assert history.last_accepted(db) is None


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.sqlite: no such history file"):
        history.runs(tmp_path / "nope.sqlite")
    with pytest.raises(InputError, match=r"nope.sqlite: no such history file"):
        history.last_accepted(tmp_path / "nope.sqlite")
    assert history.last_accepted(tmp_path / "nope.sqlite", missing_ok=True) is None  # the first nightly run
    assert not (tmp_path / "nope.sqlite").exists()
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database at all\n")
    for fn in (history.runs, history.trend_table, lambda p: history.append(p, rec())):
        with pytest.raises(InputError, match=r"notes.txt: not an SQLite file"):
            fn(text)
    assert text.read_text() == "hello, not a database at all\n"
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    for fn in (history.runs, lambda p: history.append(p, rec())):
        with pytest.raises(InputError, match=r"other.sqlite: an SQLite database but not a qharness history"):
            fn(other)
    with pytest.raises(InputError, match="is a folder"):
        history.runs(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        history.append(tmp_path / "no" / "dir" / "h.sqlite", rec())
    newer = tmp_path / "newer.sqlite"
    history.append(newer, rec())
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="schema version 99 was written by a newer qharness"):
        history.runs(newer)


def test_git_commit(tmp_path, monkeypatch):
    assert history.git_commit(tmp_path) is None  # not a repository
    assert history.git_commit(tmp_path / "missing") is None  # not even a folder
    if shutil.which("git"):
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        repo = tmp_path / "repo"
        repo.mkdir()
        assert history.git_commit(repo) is None  # no commit yet
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, check=True, env=env)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, env=env)
        assert history.git_commit(repo) == sha.stdout.strip() and len(sha.stdout.strip()) == 40
        (repo / "sub").mkdir()
        assert history.git_commit(repo / "sub") == sha.stdout.strip()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert history.git_commit(tmp_path) is None


# ---------------------------------------------------------------------------------------------- concurrency

WRITERS = 4
PER_WRITER = 150


def _writer(db: str, proc: int, n: int, barrier) -> None:
    summary = make_summary()
    text = json.dumps(summary)
    barrier.wait()
    for i in range(n):
        record = history.record_from_summary(summary, time=f"2025-06-01T02:{proc:02d}:{i % 60:02d}Z",
                                             summary_text=text, verdict="passed" if i % 3 else "failed",
                                             extra={"proc": proc, "i": i})
        record["metrics"] = {**record["metrics"], f"writer/{proc}/i": float(i)}
        history.append(db, record)


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "shared.sqlite"  # created by the race itself
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(db), p, PER_WRITER, barrier)) for p in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    rs = history.runs(db)
    assert len(rs) == WRITERS * PER_WRITER
    ids = [r["id"] for r in rs]
    assert len(set(ids)) == len(ids) and sorted(ids) == list(range(1, len(ids) + 1))
    seen = {(r["extra"]["proc"], r["extra"]["i"]) for r in rs}
    assert seen == {(p, i) for p in range(WRITERS) for i in range(PER_WRITER)}
    n_metrics = len(history.flatten_metrics(make_summary())) + 1
    for r in rs:  # every run complete with its own metrics: nothing interleaved or half-written
        assert len(r["metrics"]) == n_metrics
        assert r["metrics"][f"writer/{r['extra']['proc']}/i"] == r["extra"]["i"]
    # each writer's own records stay in its order
    for p in range(WRITERS):
        mine = [r["extra"]["i"] for r in rs if r["extra"]["proc"] == p]
        assert mine == list(range(PER_WRITER))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM meta WHERE key = 'schema_version'").fetchone()[0] == 1
    con.close()
    assert history.last_accepted_run(db)["verdict"] == "passed"


# ---------------------------------------------------------------------------------------------- trends


def three_runs(db):
    for day, (m, verdict) in enumerate(((0.48, "passed"), (0.40, "failed"), (0.47, "passed")), start=1):
        s = make_summary({**INT8_BOX, "mAP50_95": m})
        s["deltas"][0]["metrics"]["bbox"]["mAP50_95"] = round(100 * (m - 0.50), 4)
        history.append(db, rec(s, time=f"2025-06-0{day}T02:00:00Z", verdict=verdict, commit=f"{day}" * 40))


def test_trend_table_by_hand(tmp_path):
    db = tmp_path / "h.sqlite"
    three_runs(db)
    lines = history.trend_table(db).splitlines()
    assert lines[0] == ("| Run | Time (UTC) | Commit | Verdict | float/bbox/mAP50_95 (%) | int8/bbox/mAP50_95 (%) "
                        "| delta/int8/bbox/mAP50_95 (pts) |")
    assert lines[1] == "|---|---|---|---|---:|---:|---:|"
    assert lines[2] == "| 1 | 2025-06-01T02:00:00Z | 1111111111 | passed (accepted) | 50.00 | 48.00 | -2.00 |"
    assert lines[3] == "| 2 | 2025-06-02T02:00:00Z | 2222222222 | failed | 50.00 | 40.00 | -10.00 |"
    assert lines[4] == "| 3 | 2025-06-03T02:00:00Z | 3333333333 | passed (accepted) | 50.00 | 47.00 | -3.00 |"
    assert len(lines) == 5
    lines = history.trend_table(db, metrics=["int8/bbox/mAP50", "*/bbox/mean_recall", "int8/bbox/AP_small"],
                                last=2).splitlines()
    assert lines[0].endswith("| int8/bbox/mAP50 (%) | delta/int8/bbox/mean_recall (pts) | float/bbox/mean_recall (%) "
                             "| int8/bbox/mean_recall (%) | int8/bbox/AP_small (%) |")
    assert lines[2] == "| 2 | 2025-06-02T02:00:00Z | 2222222222 | failed | 69.00 | -0.50 | 60.00 | 61.00 |  |"
    assert len(lines) == 4


def test_trend_table_empty_history(tmp_path):
    db = tmp_path / "h.sqlite"
    history.append(db, rec())
    con = sqlite3.connect(db)
    con.execute("DELETE FROM metrics")
    con.execute("DELETE FROM runs")
    con.commit()
    con.close()
    assert "(no runs yet)" in history.trend_table(db)


def test_trend_plot_is_a_png(tmp_path):
    db = tmp_path / "h.sqlite"
    three_runs(db)
    out = history.trend_plot(db, tmp_path / "trend.png")
    assert out == tmp_path / "trend.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    out2 = history.trend_plot(db, tmp_path / "one.png", metrics=["int8/bbox/mAP50"], last=1)
    assert out2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trend_plot_without_matplotlib(tmp_path, monkeypatch):
    db = tmp_path / "h.sqlite"
    three_runs(db)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(InputError, match="pip install matplotlib"):
        history.trend_plot(db, tmp_path / "trend.png")
    assert not (tmp_path / "trend.png").exists()


# ---------------------------------------------------------------------------------------------- drift
def _drifted(total_pts: float) -> dict:
    """The run summary with the INT8 model's box mAP@0.5-0.95 `total_pts` lower than make_summary's."""
    s = make_summary({**INT8_BOX, "mAP50_95": round(INT8_BOX["mAP50_95"] - total_pts / 100, 6)})
    return s


DRIFT_GATE = [{"kind": "max_regression", "metric": "mAP50_95", "of": "drop", "limit": 1.0},
              {"kind": "max_regression", "metric": "mAP50_95", "of": "drop", "limit": 1.0, "against": "pinned"}]


def test_slow_drift_passes_every_night_and_fails_against_the_pinned_reference(tmp_path):
    """Three nights losing 0.41, 0.50 and 0.62 pts each pass the 1-pt nightly step (the ratchet let 1.53 pts
    through); the pinned reference, accepted by a person, sees the 1.53 and fails the third night."""
    db = tmp_path / "h.sqlite"
    g = gate(*DRIFT_GATE)
    first = make_summary()
    v0 = evaluate_gate(g, first, baseline=history.last_accepted(db, like=first, missing_ok=True) or
                       "no accepted run yet", pinned=None)
    assert [r.reason for r in v0.results][0] == "no accepted run yet"
    history.append(db, rec(first, verdict=v0))
    history.accept(db, 1, time="2025-06-01T08:00:00Z", note="reviewed by hand")
    steps, total, verdicts = (0.41, 0.50, 0.62), 0.0, []
    for night, step in enumerate(steps, start=2):
        total = round(total + step, 2)
        s = _drifted(total)
        base = history.last_accepted(db, like=s)
        pinned = history.pinned_run(db, like=s)["summary"]
        v = evaluate_gate(g, s, baseline=base, pinned=pinned)
        verdicts.append(v)
        history.append(db, rec(s, time=f"2025-06-0{night}T02:00:00Z", verdict=v))
    nightly = [v.results[0] for v in verdicts]
    drift = [v.results[1] for v in verdicts]
    assert [r.value for r in nightly] == pytest.approx([0.41, 0.50, 0.62]) and all(r.passed for r in nightly)
    assert [r.value for r in drift] == pytest.approx([0.41, 0.91, 1.53])
    assert [r.passed for r in drift] == [True, True, False]
    assert "pinned reference" in drift[2].detail
    rs = history.runs(db)
    assert [r["pinned"] for r in rs] == [True, False, False, False]
    assert [r["accepted"] for r in rs] == [True, True, True, False]  # the third night failed: not accepted
    assert "passed (pinned)" in history.trend_table(db)


def test_accept_names_a_missing_run_and_pins_newest_first(tmp_path):
    db = tmp_path / "h.sqlite"
    for t in ("2025-06-01T02:00:00Z", "2025-06-02T02:00:00Z"):
        history.append(db, rec(time=t, verdict="failed"))
    with pytest.raises(InputError, match="no run 7"):
        history.accept(db, 7, time="2025-06-03T00:00:00Z")
    assert history.pinned_run(db, like=make_summary()) is None
    history.accept(db, 1, time="2025-06-03T00:00:00Z")
    history.accept(db, 2, time="2025-06-03T01:00:00Z")
    assert history.pinned_run(db, like=make_summary())["id"] == 2
    assert history.last_accepted_run(db, like=make_summary())["id"] == 2  # accepting marks it accepted
    # another dataset does not see these pins
    assert history.pinned_run(db, like=make_summary(dataset="e" * 64)) is None


def test_history_accept_cli(tmp_path):
    db = tmp_path / "h.sqlite"
    history.append(db, rec())
    r = subprocess.run([sys.executable, "-m", "validator.cli", "history", "accept", "1", "--db", str(db)],
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0 and "run 1" in r.stdout and "pinned reference" in r.stdout
    r = subprocess.run([sys.executable, "-m", "validator.cli", "history", "accept", "5", "--db", str(db)],
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no run 5" in r.stderr
    r = subprocess.run([sys.executable, "-m", "validator.cli", "history", "acept", "1", "--db", str(db)],
                       capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 2 and "did you mean 'accept'" in r.stderr
    listing = subprocess.run([sys.executable, "-m", "validator.cli", "history", "--db", str(db), "--plot",
                              str(tmp_path / "t.png")], capture_output=True, text=True, check=False, timeout=120)
    assert "(pinned)" in listing.stdout
