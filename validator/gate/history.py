"""Run history in one SQLite file: every validated run appended, the last accepted one as the nightly
baseline, the pinned reference for drift, trends.

A record is one run: its time (ISO 8601 UTC, given by the caller), the git commit when run inside a
repository, model and dataset hashes, settings, every metric flattened to ``key -> value``, the gate's
verdict, whether the run is *accepted* (a gated run that passed, or one a person accepted), and the exact
``summary.json`` text, so ``--baseline last-accepted`` compares with precisely the summary that run wrote.

Why a pinned reference too: comparing each night with the last accepted run lets slow drift through (three
nights losing 0.41, 0.50 and 0.62 pts each pass a 1-pt limit while 1.53 pts are gone). ``validate history
accept RUN`` pins a run a person has looked at; checks with ``against = "pinned"`` measure the drift since
it, whatever the nights in between did. The newest pin matching a run's dataset, metric and models is its
reference. Pins live in their own table (``pins``), created when first used: files of schema 1 without it
read as "no pin yet".

Schema (version 1, in ``meta``; created on first use)::

    meta    (key TEXT PRIMARY KEY, value TEXT)      -- format = qharness-history, schema_version = 1
    runs    (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT, git_commit TEXT,
             verdict TEXT  -- 'passed' | 'failed' | 'none' (not gated)
             accepted INTEGER, metric TEXT, dataset_sha256 TEXT,
             models TEXT   -- JSON {name: sha256}
             settings TEXT -- JSON, summary["settings"]
             gate TEXT     -- JSON, Verdict.to_dict() or NULL
             summary TEXT  -- the summary.json text as written
             extra TEXT)   -- JSON, anything else the caller records
    metrics (run_id INTEGER REFERENCES runs(id), key TEXT, value REAL, PRIMARY KEY (run_id, key))
    pins    (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER REFERENCES runs(id), time TEXT, note TEXT)

Metric keys (``flatten_metrics``), values as in summary.json (fractions for models, points for deltas)::

    <model>/<iou_type>/<metric>                    shapes-det.int8/bbox/mAP50_95 -> 0.4459
    <model>/<iou_type>/class/<cat_id>/AP50         per-class AP (AP50, AP50_95)
    delta/<model>/<iou_type>/<metric>              delta/shapes-det.int8/bbox/mAP50_95 -> -7.298 (pts)
    delta/<model>/<iou_type>/class/<cat_id>/AP50   per-class delta (pts)
    delta/<model>/changed_images                   images whose detections changed materially

New metric names are new rows, never a schema change.

Concurrent writers (two CI jobs appending to one file on a shared disk) are safe: WAL journal, each append
one ``BEGIN IMMEDIATE`` transaction (the run and its metrics together or not at all), a busy timeout, and
retries with jittered backoff when the lock is still held. (SQLite's locking needs a local or properly
locking filesystem: not NFS.)
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import random
import sqlite3
import subprocess
import time as _time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from validator.errors import InputError

FORMAT = "qharness-history"
SCHEMA_VERSION = 1
VERDICTS = ("passed", "failed", "none")
BUSY_TIMEOUT_S = 30.0
RETRIES = 12
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    git_commit TEXT,
    verdict TEXT NOT NULL CHECK (verdict IN ('passed', 'failed', 'none')),
    accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    metric TEXT,
    dataset_sha256 TEXT,
    models TEXT NOT NULL,
    settings TEXT NOT NULL,
    gate TEXT,
    summary TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS runs_accepted ON runs (accepted, id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
"""
_PINS_SCHEMA = ("CREATE TABLE IF NOT EXISTS pins (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL "
                "REFERENCES runs (id), time TEXT NOT NULL, note TEXT)")
_SCHEMA += _PINS_SCHEMA + ";"

_RUN_COLUMNS = ("id", "time", "git_commit", "verdict", "accepted", "metric", "dataset_sha256", "models",
                "settings", "gate", "extra")


# ---------------------------------------------------------------------------------------------- helpers


def utc_now() -> str:
    """Now as ISO 8601 UTC to the second: ``2025-06-01T02:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The HEAD commit of the repository holding ``cwd`` (default: the current folder), else None. Never raises."""
    try:
        p = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=str(cwd) if cwd is not None else None,
                           capture_output=True, text=True, timeout=10,
                           env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    sha = p.stdout.strip()
    if p.returncode != 0 or not sha or any(c not in "0123456789abcdef" for c in sha):
        return None
    return sha


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def flatten_metrics(summary: Mapping) -> dict[str, float | None]:
    """Every numeric metric of a summary.json dict under a flat key (module docstring)."""
    out: dict[str, float | None] = {}
    for m in summary.get("models", []) or []:
        name = m.get("name")
        for iou, mets in (m.get("metrics") or {}).items():
            for k, v in (mets or {}).items():
                if k == "per_class" and isinstance(v, Mapping):
                    for cid, row in v.items():
                        for a in ("AP50", "AP50_95"):
                            if a in row:
                                out[f"{name}/{iou}/class/{cid}/{a}"] = _finite(row[a])
                elif v is None or _finite(v) is not None or isinstance(v, float):
                    out[f"{name}/{iou}/{k}"] = _finite(v)
    for d in summary.get("deltas", []) or []:
        name = d.get("model")
        for iou, mets in (d.get("metrics") or {}).items():
            for k, v in (mets or {}).items():
                if k == "per_class" and isinstance(v, list):
                    for row in v:
                        for a in ("AP50", "AP50_95"):
                            if "d" + a in row:
                                out[f"delta/{name}/{iou}/class/{row['category_id']}/{a}"] = _finite(row["d" + a])
                elif v is None or _finite(v) is not None or isinstance(v, float):
                    out[f"delta/{name}/{iou}/{k}"] = _finite(v)
        changed = d.get("changed_images")
        if isinstance(changed, Mapping) and _finite(changed.get("count")) is not None:
            out[f"delta/{name}/changed_images"] = float(changed["count"])
    return out


def record_from_summary(summary: Mapping, *, time: str, summary_text: str | None = None,
                        verdict: Any = None, commit: str | None = None, accepted: bool | None = None,
                        extra: Mapping | None = None) -> dict:
    """A record for ``append`` from a summary.json dict (and its text as written, if at hand).

    ``verdict``: a ``gate.Verdict``, its ``to_dict()``, ``"passed"``/``"failed"``, or None (not gated).
    ``accepted`` defaults to "the gate passed".
    """
    gate = None
    if verdict is None:
        v = "none"
    elif isinstance(verdict, str):
        v = verdict
    else:
        gate = verdict if isinstance(verdict, Mapping) else verdict.to_dict()
        v = "passed" if gate.get("passed") else "failed"
    return {
        "time": time,
        "commit": commit,
        "verdict": v,
        "accepted": (v == "passed") if accepted is None else bool(accepted),
        "metric": summary.get("metric"),
        "dataset_sha256": (summary.get("dataset") or {}).get("sha256"),
        "models": {m.get("name"): m.get("sha256") for m in summary.get("models", []) or []},
        "settings": summary.get("settings") or {},
        "metrics": flatten_metrics(summary),
        "gate": gate,
        "summary": summary_text if summary_text is not None else json.dumps(summary, indent=2),
        "extra": dict(extra) if extra else None,
    }


def _check_time(t: Any) -> str:
    if not isinstance(t, str):
        raise ValueError(f"history record: time must be an ISO 8601 string, got {t!r}")
    try:
        parsed = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith("Z") else t)
    except ValueError:
        raise ValueError(f"history record: time {t!r} is not ISO 8601") from None
    if parsed.tzinfo is not None and parsed.utcoffset().total_seconds() != 0:
        raise ValueError(f"history record: time {t!r} is not UTC")
    return t


# ---------------------------------------------------------------------------------------------- the file


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return head == _SQLITE_MAGIC or head == b""


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a history SQLite file")
    if path.exists():
        if not _looks_like_sqlite(path):
            raise InputError(f"{path}: not an SQLite file (not a qharness history)")
    elif not create:
        raise InputError(f"{path}: no such history file")
    elif not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path}: cannot open as SQLite ({e})") from None
    return con


def _busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _retrying(path: Path, fn):
    """``fn()`` again (fresh connection each time) while SQLite says the file is locked."""
    delay = 0.05
    for attempt in range(RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _busy(e) or attempt == RETRIES - 1:
                raise InputError(f"{path}: history database is locked or unusable ({e})") from None
        _time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _schema_state(con: sqlite3.Connection, path: Path) -> int | None:
    """The file's schema version, None for an empty database; InputError for someone else's database."""
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError) and _busy(e):
            raise
        raise InputError(f"{path}: not a usable SQLite database ({e})") from None
    if not tables:
        return None
    if "meta" not in tables:
        raise InputError(f"{path}: an SQLite database but not a qharness history (no meta table)")
    meta = dict(con.execute("SELECT key, value FROM meta"))
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: an SQLite database but not a qharness history (meta format {meta.get('format')!r})")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise InputError(f"{path}: history schema version unreadable ({meta.get('schema_version')!r})") from None
    if version > SCHEMA_VERSION:
        raise InputError(f"{path}: history schema version {version} was written by a newer qharness "
                         f"(this one reads {SCHEMA_VERSION}); upgrade qharness")
    return version


def append(db_path: str | Path, record: Mapping) -> int:
    """Append one run (see ``record_from_summary``) and return its id; creates the file on first use.

    Keys: ``time`` (required, ISO 8601 UTC), ``commit``, ``verdict`` ("passed" | "failed" | "none"),
    ``accepted`` (default: verdict == "passed"), ``metric``, ``dataset_sha256``, ``models`` ({name: sha256}),
    ``settings``, ``metrics`` ({key: number | None}), ``gate`` (verdict dict), ``summary`` (text or dict),
    ``extra``. When ``summary`` is given, missing ``metrics``/``models``/... are taken from it.
    """
    path = Path(db_path)
    rec = dict(record)
    t = _check_time(rec.get("time"))
    summary = rec.get("summary")
    summary_obj = None
    if isinstance(summary, Mapping):
        summary_obj, summary = summary, json.dumps(summary, indent=2)
    elif isinstance(summary, str):
        try:
            summary_obj = json.loads(summary)
        except json.JSONDecodeError:
            raise ValueError("history record: summary is not JSON text") from None
    elif summary is not None:
        raise ValueError(f"history record: summary must be a dict or JSON text, got {type(summary).__name__}")
    if summary_obj is not None:
        derived = record_from_summary(summary_obj, time=t, summary_text=summary)
        for k in ("metric", "dataset_sha256", "models", "settings", "metrics"):
            rec.setdefault(k, derived[k])
    verdict = rec.get("verdict") or "none"
    if verdict not in VERDICTS:
        raise ValueError(f"history record: verdict must be one of {VERDICTS}, got {verdict!r}")
    accepted = rec.get("accepted")
    accepted = (verdict == "passed") if accepted is None else bool(accepted)
    metrics = rec.get("metrics") or {}
    rows = sorted((str(k), _finite(v)) for k, v in metrics.items())
    commit = rec.get("commit")
    run_row = (t, commit if commit else None, verdict, int(accepted), rec.get("metric"), rec.get("dataset_sha256"),
               json.dumps(rec.get("models") or {}, sort_keys=True),
               json.dumps(rec.get("settings") or {}, sort_keys=True),
               json.dumps(rec["gate"], sort_keys=True) if rec.get("gate") is not None else None, summary,
               json.dumps(rec["extra"], sort_keys=True) if rec.get("extra") else None)

    def attempt() -> int:
        con = _connect(path, create=True)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("BEGIN IMMEDIATE")
            try:
                if _schema_state(con, path) is None:
                    # statement by statement: executescript() would COMMIT the IMMEDIATE transaction first
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            con.execute(stmt)
                    con.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                                    [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", t)])
                cur = con.execute("INSERT INTO runs (time, git_commit, verdict, accepted, metric, dataset_sha256, "
                                  "models, settings, gate, summary, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  run_row)
                run_id = int(cur.lastrowid)
                con.executemany("INSERT INTO metrics (run_id, key, value) VALUES (?, ?, ?)",
                                [(run_id, k, v) for k, v in rows])
                con.execute("COMMIT")
                return run_id
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        finally:
            con.close()

    try:
        return _retrying(path, attempt)
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path}: history database unusable ({e})") from None


def _read(db_path: str | Path, fn):
    path = Path(db_path)

    def attempt():
        con = _connect(path, create=False)
        try:
            if _schema_state(con, path) is None:
                raise InputError(f"{path}: an empty SQLite database, not a qharness history")
            return fn(con)
        finally:
            con.close()

    try:
        return _retrying(path, attempt)
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path}: history database unreadable ({e})") from None


def _row_to_run(row: tuple, metrics: dict | None, summary: str | None = None) -> dict:
    d = dict(zip(_RUN_COLUMNS, row, strict=True))
    d["commit"] = d.pop("git_commit")
    d["accepted"] = bool(d["accepted"])
    d["models"] = json.loads(d["models"]) if d["models"] else {}
    d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
    d["gate"] = json.loads(d["gate"]) if d["gate"] else None
    d["extra"] = json.loads(d["extra"]) if d["extra"] else None
    d["metrics"] = metrics if metrics is not None else {}
    if summary is not None:
        d["summary"] = json.loads(summary)
    return d


def _metrics_for(con: sqlite3.Connection, ids: list[int]) -> dict[int, dict]:
    out: dict[int, dict] = {i: {} for i in ids}
    if not ids:
        return out
    lo, hi = min(ids), max(ids)
    for run_id, key, value in con.execute(
            "SELECT run_id, key, value FROM metrics WHERE run_id BETWEEN ? AND ? ORDER BY run_id, key", (lo, hi)):
        if run_id in out:
            out[run_id][key] = value
    return out


def runs(db_path: str | Path, limit: int | None = None, *, with_summary: bool = False) -> list[dict]:
    """Runs oldest first (the newest ``limit`` when given), each with its flat ``metrics`` dict.

    Each run: id, time, commit, verdict, accepted, metric, dataset_sha256, models, settings, gate, extra,
    metrics, and ``summary`` (the parsed summary.json) when ``with_summary``.
    """
    cols = ", ".join(_RUN_COLUMNS) + (", summary" if with_summary else "")

    def q(con):
        sql = f"SELECT {cols} FROM runs ORDER BY id DESC"
        rows = con.execute(sql + (" LIMIT ?" if limit is not None else ""),
                           (() if limit is None else (int(limit),))).fetchall()
        rows.reverse()
        mets = _metrics_for(con, [r[0] for r in rows])
        pinned = set(_pinned_ids(con))
        out = [_row_to_run(r[:len(_RUN_COLUMNS)], mets[r[0]], r[-1] if with_summary else None) for r in rows]
        for r in out:
            r["pinned"] = r["id"] in pinned
        return out

    return _read(db_path, q)


def _has_pins(con: sqlite3.Connection) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pins'").fetchone() is not None


def _pinned_ids(con: sqlite3.Connection) -> list[int]:
    """Pinned run ids, newest pin first (a file without the pins table has none)."""
    if not _has_pins(con):
        return []
    return [r[0] for r in con.execute("SELECT run_id FROM pins ORDER BY id DESC")]


def accept(db_path: str | Path, run_id: int, *, time: str, note: str | None = None) -> dict:
    """Pin run ``run_id`` as the reference (and mark it accepted): a person looked at it and takes its
    numbers as the standard later runs' drift is measured against. Returns the run (``runs`` format)."""
    path = Path(db_path)
    t = _check_time(time)

    def attempt() -> None:
        con = _connect(path, create=False)
        try:
            if _schema_state(con, path) is None:
                raise InputError(f"{path}: an empty SQLite database, not a qharness history")
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT id, summary FROM runs WHERE id = ?", (int(run_id),)).fetchone()
                if row is None:
                    last = con.execute("SELECT MAX(id) FROM runs").fetchone()[0]
                    raise InputError(f"{path}: no run {run_id} (runs 1..{last or 0}; see validate history --db {path})")
                if row[1] is None:
                    raise InputError(f"{path}: run {run_id} has no summary.json recorded; it cannot be a reference")
                if not _has_pins(con):
                    con.execute(_PINS_SCHEMA)
                con.execute("INSERT INTO pins (run_id, time, note) VALUES (?, ?, ?)", (int(run_id), t, note))
                con.execute("UPDATE runs SET accepted = 1 WHERE id = ?", (int(run_id),))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        finally:
            con.close()

    try:
        _retrying(path, attempt)
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path}: history database unusable ({e})") from None
    return next(r for r in runs(path) if r["id"] == int(run_id))


def _filters(like: Mapping | None, dataset_sha256, metric, models) -> tuple[str | None, str | None, set]:
    if like is not None:
        dataset_sha256 = dataset_sha256 or (like.get("dataset") or {}).get("sha256")
        metric = metric or like.get("metric")
        if models is None:
            ds = like.get("deltas") or []
            models = ({d["model"] for d in ds} | {d["reference"] for d in ds}) if ds else \
                {m["name"] for m in like.get("models", [])}
    return dataset_sha256, metric, set(models) if models is not None else set()


def _newest_matching(db_path: str | Path, where: str, like, dataset_sha256, metric, models, missing_ok: bool,
                     pinned: bool = False) -> dict | None:
    dataset_sha256, metric, want = _filters(like, dataset_sha256, metric, models)
    if missing_ok and not Path(db_path).exists():
        return None
    cols = ", ".join(f"runs.{c}" for c in _RUN_COLUMNS) + ", runs.summary"

    def q(con):
        if pinned:
            if not _has_pins(con):
                return None
            sql = f"SELECT {cols} FROM pins JOIN runs ON runs.id = pins.run_id WHERE 1"
            order = " ORDER BY pins.id DESC"
        else:
            sql = f"SELECT {cols} FROM runs WHERE {where}"
            order = " ORDER BY runs.id DESC"
        args: list[Any] = []
        if dataset_sha256:
            sql += " AND runs.dataset_sha256 = ?"
            args.append(dataset_sha256)
        if metric:
            sql += " AND runs.metric = ?"
            args.append(metric)
        for row in con.execute(sql + order, args):
            if row[-1] is None:
                continue
            if want and not want <= set(json.loads(row[7] or "{}")):
                continue
            mets = _metrics_for(con, [row[0]])
            run = _row_to_run(row[:len(_RUN_COLUMNS)], mets[row[0]], row[-1])
            run["pinned"] = row[0] in set(_pinned_ids(con))
            return run
        return None

    return _read(db_path, q)


def last_accepted_run(db_path: str | Path, *, like: Mapping | None = None, dataset_sha256: str | None = None,
                      metric: str | None = None, models: Iterable[str] | None = None,
                      missing_ok: bool = False) -> dict | None:
    """The newest accepted run (as ``runs`` gives it, with ``summary``) matching the filters, else None.

    ``missing_ok``: a history file that does not exist yet (the first run) gives None instead of an error.

    ``like``: a summary.json dict; the run must share its dataset sha256, its ``metric`` and hold every model
    it compares (its ``deltas`` models and their references; every model when it has no deltas).
    ``dataset_sha256`` / ``metric`` / ``models``: explicit filters (they override ``like``'s).
    """
    return _newest_matching(db_path, "runs.accepted = 1", like, dataset_sha256, metric, models, missing_ok)


def pinned_run(db_path: str | Path, *, like: Mapping | None = None, dataset_sha256: str | None = None,
               metric: str | None = None, models: Iterable[str] | None = None, missing_ok: bool = False) -> dict | None:
    """The run of the newest pin matching the filters (as ``last_accepted_run``), else None."""
    return _newest_matching(db_path, "", like, dataset_sha256, metric, models, missing_ok, pinned=True)


def last_accepted(db_path: str | Path, *, like: Mapping | None = None, dataset_sha256: str | None = None,
                  metric: str | None = None, models: Iterable[str] | None = None,
                  missing_ok: bool = False) -> dict | None:
    """The summary.json dict of the newest accepted run (``evaluate_gate(..., baseline=...)``), else None."""
    run = last_accepted_run(db_path, like=like, dataset_sha256=dataset_sha256, metric=metric, models=models,
                            missing_ok=missing_ok)
    return None if run is None else run["summary"]


# ---------------------------------------------------------------------------------------------- trends


def _default_metrics(keys: Iterable[str]) -> list[str]:
    return ["*/bbox/mAP50_95", "*/segm/mAP50_95"] if keys else []


def _select(patterns: Iterable[str], keys: Iterable[str]) -> list[str]:
    """Keys matching each pattern (fnmatch; an exact key matches itself), pattern order, then sorted."""
    keys = sorted(set(keys))
    out: list[str] = []
    for p in patterns:
        hits = [k for k in keys if k == p] or [k for k in keys if fnmatch.fnmatchcase(k, p) and "/class/" not in k]
        hits = hits or [k for k in keys if fnmatch.fnmatchcase(k, p)]
        out.extend(k for k in hits if k not in out)
    return out


def _is_delta(key: str) -> bool:
    return key.startswith("delta/")


def _fmt(key: str, v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:+.2f}" if _is_delta(key) else f"{100 * v:.2f}"


def _chosen(rs: list[dict], metrics: Iterable[str] | None) -> list[str]:
    keys = {k for r in rs for k in r["metrics"]}
    if metrics is not None:
        return _select(list(metrics), keys)
    # default: models' own values first, then deltas, models in the newest run's order
    order = {name: i for i, name in enumerate(rs[-1]["models"])} if rs else {}

    def rank(k: str) -> tuple:
        parts = k.split("/")
        model = parts[1] if _is_delta(k) else parts[0]
        return _is_delta(k), order.get(model, len(order)), model, k

    return sorted(_select(_default_metrics(keys), keys), key=rank)


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _with_current(db_path: str | Path, last: int | None, current: Mapping | None) -> list[dict]:
    """The runs (the last ``last``), plus ``current`` (a ``record_from_summary`` record not yet appended:
    the run being validated, which lands in the history only after its outputs) as the newest, id "now"."""
    rs = runs(db_path, limit=last) if Path(db_path).exists() else []
    if current is not None:
        rs = rs[1:] if last is not None and len(rs) >= last else rs
        rs = rs + [{"id": "now", "time": current["time"], "commit": current.get("commit"),
                    "verdict": current["verdict"], "accepted": current["accepted"], "pinned": False,
                    "metrics": current["metrics"], "models": current["models"]}]
    return rs


def trend_table(db_path: str | Path, metrics: Iterable[str] | None = None, last: int = 20,
                current: Mapping | None = None) -> str:
    """Markdown, one row per run (oldest first, the last ``last``): id, time, commit, verdict, metrics.

    ``metrics``: keys or fnmatch patterns (``"*/bbox/mAP50"``); default every model's and delta's box and
    mask mAP50_95. Model metrics in %, ``delta/...`` in points. ``current``: this run, not yet recorded.
    """
    rs = _with_current(db_path, last, current)
    cols = _chosen(rs, metrics)
    head = ["Run", "Time (UTC)", "Commit", "Verdict"] + [f"{_md(k)} ({'pts' if _is_delta(k) else '%'})" for k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * len(cols)]
    for r in rs:
        verdict = r["verdict"] + (" (pinned)" if r.get("pinned") else " (accepted)" if r["accepted"] else "")
        cells = [str(r["id"]) if r["id"] != "now" else "this run", _md(r["time"]), (r["commit"] or "")[:10],
                 verdict]
        cells += [_fmt(k, r["metrics"].get(k)) for k in cols]
        lines.append("| " + " | ".join(cells) + " |")
    if not rs:
        lines.append("| (no runs yet) |" + " |" * (3 + len(cols)))
    return "\n".join(lines) + "\n"


def trend_plot(db_path: str | Path, out_png: str | Path, metrics: Iterable[str] | None = None,
               last: int | None = None, current: Mapping | None = None) -> Path:
    """A PNG of the chosen metrics over the runs (model metrics in %, deltas in pts below); returns its path.

    Accepted runs are filled markers, failed gates marked with a red x on the run's tick.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("trend plot needs matplotlib: pip install matplotlib") from None
    rs = _with_current(db_path, last, current)
    cols = _chosen(rs, metrics)
    abs_cols = [k for k in cols if not _is_delta(k)]
    del_cols = [k for k in cols if _is_delta(k)]
    panels = [(c, u) for c, u in ((abs_cols, "%"), (del_cols, "pts")) if c] or [([], "%")]
    fig = Figure(figsize=(9, 2.2 + 2.3 * len(panels)), dpi=100)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    xs = list(range(len(rs)))
    for ax, (keys, unit) in zip(axes, panels, strict=True):
        for k in keys:
            ys = [r["metrics"].get(k) for r in rs]
            pts = [(x, (100 * y if unit == "%" else y)) for x, y in zip(xs, ys, strict=True) if y is not None]
            if not pts:
                continue
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", lw=1.5, label=k)[0]
            acc = [p for p in pts if rs[p[0]]["accepted"]]
            rest = [p for p in pts if not rs[p[0]]["accepted"]]
            ax.plot([p[0] for p in acc], [p[1] for p in acc], "o", color=line.get_color(), ms=5)
            ax.plot([p[0] for p in rest], [p[1] for p in rest], "o", mfc="white", color=line.get_color(), ms=5)
        if unit == "pts":
            ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylabel("points (model - reference)" if unit == "pts" else "percent")
        ax.grid(True, alpha=0.3)
        failed = [x for x in xs if rs[x]["verdict"] == "failed"]
        if failed:
            ax.plot(failed, [0] * len(failed), "x", color="red", ms=9, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False, label="gate failed")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    axes[0].set_title(f"qharness history: {len(rs)} run{'s' if len(rs) != 1 else ''}"
                      + ("" if rs else " (no runs yet)"))
    step = max(1, math.ceil(len(xs) / 15))  # at most ~15 labelled ticks, the newest run always labelled
    ticks = xs[::-1][::step][::-1]
    axes[-1].set_xticks(ticks)
    axes[-1].set_xticklabels([f"#{rs[x]['id']}\n{rs[x]['time'][:10]}" if rs[x]["id"] != "now" else
                              f"this run\n{rs[x]['time'][:10]}" for x in ticks], fontsize=7)
    axes[-1].set_xlabel("run (filled: accepted)")
    if xs:
        axes[-1].set_xlim(-0.5, len(xs) - 0.5)
    fig.tight_layout()
    out = Path(out_png)
    try:
        fig.savefig(out, format="png")
    except OSError as e:
        raise InputError(f"{out}: cannot write the trend plot ({e.strerror or e})") from None
    return out
