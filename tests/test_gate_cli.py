"""The gate through the real `validate`: exit 0 / 1 by the verdict, junit.xml, summary.json's gate, the GitHub
step summary, the history and `validate history`, a baseline, and bad gate input (exit 2, before inference)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import MODELS
from validator.cli import main

DET, DET8 = MODELS / "shapes-det.onnx", MODELS / "shapes-det.int8.tflite"

GATE = """
name = "test gate"
[bootstrap]
resamples = 200
seed = 1
[[check]]
kind = "max_drop"
metric = "mAP50"
limit = {limit}
[[check]]
kind = "max_regression"
metric = "mAP50_95"
limit = 1.0
"""


def _gate(tmp_path: Path, limit: float) -> Path:
    p = tmp_path / f"gate-{limit}.toml"
    p.write_text(GATE.format(limit=limit))
    return p


def _run(shapes_small, out: Path, *extra) -> int:
    return main(["--float", str(DET), "--int8", str(DET8), "--data", str(shapes_small), "--limit", "12",
                 "--out", str(out), "--quiet", *[str(e) for e in extra]])


def test_passing_gate_exit_0_junit_summary_step_summary_history(shapes_small, tmp_path, monkeypatch):
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    db = tmp_path / "h.sqlite"
    out = tmp_path / "o"
    assert _run(shapes_small, out, "--gate", _gate(tmp_path, 100.0), "--history", db) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["gate"]["passed"] is True and s["gate"]["resamples"] == 200
    drop = next(r for r in s["gate"]["results"] if r["metric"] == "mAP50")
    assert drop["value"] == pytest.approx(-s["deltas"][0]["metrics"]["bbox"]["mAP50"], abs=1e-3)
    assert drop["ci"] is not None and drop["ci"][0] <= drop["value"] <= drop["ci"][1]
    suite = ET.fromstring((out / "junit.xml").read_text())
    cases = suite.iter("testcase")
    assert len(list(cases)) == 2
    assert "Gate PASSED" in step.read_text() and "| Model |" in step.read_text()
    assert "Gate PASSED" in (out / "table.md").read_text()
    # the history holds the run; `validate history` prints it and plots it
    assert main(["history", "--db", str(db), "--plot", str(tmp_path / "trend.png")]) == 0
    assert (tmp_path / "trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failing_gate_exit_1_named_in_junit(shapes_small, tmp_path, capsys):
    out = tmp_path / "o"
    assert _run(shapes_small, out, "--gate", _gate(tmp_path, -100.0)) == 1  # any drop > -100 pts fails
    suite = ET.fromstring((out / "junit.xml").read_text())
    failures = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert len(failures) == 1 and "mAP50" in failures[0].get("name")
    assert capsys.readouterr().out.count("Gate FAILED") == 1  # it was printed twice


def test_verdict_printed_once_and_history_survives_a_closed_pipe(shapes_small, tmp_path, capsys):
    import subprocess
    import sys

    db = tmp_path / "h.sqlite"
    assert _run(shapes_small, tmp_path / "o", "--gate", _gate(tmp_path, 100.0), "--history", db) == 0
    assert capsys.readouterr().out.count("Gate PASSED") == 1
    # `validate history --db h.sqlite | head -3`: the reader goes away before validate writes
    p = subprocess.Popen([sys.executable, "-m", "validator.cli", "history", "--db", str(db), "--plot",
                          str(tmp_path / "t.png")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_baseline_summary_and_last_accepted(shapes_small, tmp_path):
    """A regression check against an explicit baseline summary, then against the history's last accepted run."""
    db = tmp_path / "h.sqlite"
    first = tmp_path / "first"
    assert _run(shapes_small, first, "--gate", _gate(tmp_path, 100.0), "--history", db) == 0
    base = json.loads((first / "summary.json").read_text())
    for m in base["models"]:
        m["metrics"]["bbox"]["mAP50_95"] += 0.05  # the baseline was 5 pts better: a regression now
    (tmp_path / "base.json").write_text(json.dumps(base))
    out = tmp_path / "o"
    assert _run(shapes_small, out, "--gate", _gate(tmp_path, 100.0), "--baseline", tmp_path / "base.json") == 1
    s = json.loads((out / "summary.json").read_text())
    reg = [r for r in s["gate"]["results"] if r["kind"] == "max_regression"]
    assert reg and all(r["status"] == "failed" and r["value"] == pytest.approx(5.0, abs=1e-6) for r in reg)
    # against the history's last accepted run (the first, identical inputs): no regression
    out2 = tmp_path / "o2"
    assert _run(shapes_small, out2, "--gate", _gate(tmp_path, 100.0), "--history", db, "--baseline",
                "last-accepted") == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    reg2 = [r for r in s2["gate"]["results"] if r["kind"] == "max_regression"]
    assert reg2 and all(r["status"] == "passed" and r["value"] == pytest.approx(0.0, abs=1e-9) for r in reg2)


@pytest.mark.parametrize("args,needle", [
    (["--gate", "{bad}"], "check[1].limit"),
    (["--gate", "{missing}"], "missing.toml"),
    (["--baseline", "last-accepted"], "--history"),
])
def test_bad_gate_input_exit_2_before_inference(shapes_small, tmp_path, capsys, monkeypatch, args, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[check]]\nkind = "max_drop"\nmetric = "mAP50"\nlimit = "3 pts"\n')
    args = [a.format(bad=bad, missing=tmp_path / "missing.toml") for a in args]
    import validator.inference as inference

    monkeypatch.setattr(inference, "run_models", lambda *a, **k: pytest.fail("inference ran"))
    assert _run(shapes_small, tmp_path / "o", *args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0]


def test_no_accepted_run_yet_pinned_reference_and_the_trend_holds_this_run(shapes_small, tmp_path):
    db = tmp_path / "h.sqlite"
    g = tmp_path / "g.toml"
    g.write_text('[bootstrap]\nresamples = 200\n[[check]]\nkind = "max_regression"\nmetric = "mAP50"\nlimit = 1.0\n'
                 '[[check]]\nkind = "max_regression"\nmetric = "mAP50"\nof = "drop"\nlimit = 1.0\n'
                 'against = "pinned"\n')
    assert _run(shapes_small, tmp_path / "1", "--gate", g, "--history", db, "--baseline", "last-accepted") == 0
    s = json.loads((tmp_path / "1" / "summary.json").read_text())
    reasons = [r["reason"] for r in s["gate"]["results"]]
    assert reasons[0].startswith("no accepted run yet") and reasons[1].startswith("no pinned reference yet")
    assert main(["history", "accept", "1", "--db", str(db)]) == 0
    assert _run(shapes_small, tmp_path / "2", "--gate", g, "--history", db, "--baseline", "pinned") == 0
    s = json.loads((tmp_path / "2" / "summary.json").read_text())
    assert [r["status"] for r in s["gate"]["results"]] == ["passed", "passed"]
    assert all("pinned reference" in r["detail"] for r in s["gate"]["results"][1:])
    # the second run's report shows both runs: the recorded one and this one
    html = (tmp_path / "2" / "report.html").read_text()
    trend = html.split('id="history"', 1)[1].split("</section>", 1)[0]
    assert "this run" in trend and ">1<" in trend
