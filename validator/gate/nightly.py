"""What a gated, recorded run adds to a validation: the gate's verdict with bootstrap intervals, the earlier
runs it compares with, JUnit XML, the GitHub step summary and the history record.

Everything that can be checked is checked before the long work (:func:`prepare`); the verdict is made from
the summary (:func:`judge`), and the record lands only after the outputs did (:func:`record`). Two earlier
runs can be compared with: the ``--baseline`` (a summary.json, or ``last-accepted``: the newest run of the
history whose gate passed, the nightly step) and the pinned reference (``--baseline pinned``, or checks with
``against = "pinned"``: the run a person accepted with ``validate history accept RUN``, for drift).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from validator.errors import InputError
from validator.gate import history
from validator.gate.checks import evaluate_gate
from validator.gate.render import junit_xml
from validator.gate.render import markdown as gate_markdown
from validator.gate.spec import load_gate, load_summary

BASELINE_WORDS = ("last-accepted", "pinned")


@dataclass(frozen=True)
class GateOptions:
    gate: Path | None = None  # --gate gate.toml
    baseline: str | None = None  # --baseline summary.json | last-accepted | pinned
    history: Path | None = None  # --history history.sqlite


@dataclass
class Plan:
    options: GateOptions
    gate: object | None = None  # validator.gate.spec.Gate
    baseline_summary: dict | None = None  # --baseline FILE, read up front

    @property
    def resamples(self) -> int:
        return self.gate.bootstrap.resamples if self.gate is not None else 0

    def stats_needed(self) -> tuple[str, ...]:
        """The COCO stats the gate's checks read (what the bootstrap computes)."""
        if self.gate is None:
            return ()
        return tuple(sorted({c.metric for c in self.gate.checks if c.kind != "max_class_drop"}))


def prepare(options: GateOptions) -> Plan:
    """Read and check the gate file, the baseline and the history database before any inference."""
    plan = Plan(options)
    if options.gate is not None:
        plan.gate = load_gate(options.gate)
    if options.baseline is not None:
        if options.baseline in BASELINE_WORDS:
            if options.history is None:
                raise InputError(f"--baseline {options.baseline}: give the history database with --history")
        else:
            plan.baseline_summary = load_summary(options.baseline)
    if options.history is not None and Path(options.history).exists():
        history.runs(options.history, limit=1)  # an unreadable or foreign file fails here, naming it
    return plan


def samples_for(plan: Plan, results: dict, reference: str | None, n_images: int, quiet: bool = False) -> dict | None:
    """``samples[model][iou_type]`` for the gate's intervals (``gate.bootstrap``: resamples, seed)."""
    from validator.gate.intervals import samples_for as resample

    if plan.resamples <= 0:
        return None
    return resample(results, reference, n_images, plan.resamples, plan.gate.bootstrap.seed, plan.stats_needed(),
                    quiet=quiet)


def _from_history(which: str, db: Path, summary: dict) -> dict | str:
    """The earlier run's summary, or why there is none (the check is skipped with it)."""
    if which == "pinned":
        run = history.pinned_run(db, like=summary, missing_ok=True)
        return run["summary"] if run else ("no pinned reference yet: accept a run as the reference with "
                                           f"validate history accept RUN --db {db}")
    run = history.last_accepted_run(db, like=summary, missing_ok=True)
    return run["summary"] if run else "no accepted run yet (a gated run that passed becomes the baseline)"


def judge(plan: Plan, summary: dict, samples: dict | None):
    """The verdict, or None when the run is not gated."""
    if plan.gate is None:
        return None
    o = plan.options
    baseline: dict | str | None = plan.baseline_summary
    if o.baseline in BASELINE_WORDS:
        baseline = _from_history(o.baseline, o.history, summary)
    pinned = _from_history("pinned", o.history, summary) if o.history is not None else \
        "no pinned reference: it lives in the run history (--history HISTORY)"
    return evaluate_gate(plan.gate, summary, baseline=baseline, pinned=pinned, samples=samples)


def junit(plan: Plan, verdict) -> str:
    return junit_xml(verdict, getattr(plan.gate, "name", None) or "qharness")


def history_view(plan: Plan, summary: dict | None = None, verdict=None) -> dict | None:
    """The trend for the report: the runs recorded so far and this run (appended to the history only once
    its outputs have landed, shown here as the newest row): ``{"table_md", "plot_png"}``, or None."""
    import tempfile

    db = plan.options.history
    if db is None:
        return None
    current = None
    if summary is not None:
        current = history.record_from_summary(summary, time=history.utc_now(), verdict=verdict,
                                              commit=history.git_commit(Path.cwd()))
    if current is None and (not Path(db).exists() or not history.runs(db, limit=1)):
        return None
    metrics = _report_metrics(summary) if summary is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        png = history.trend_plot(db, Path(tmp) / "trend.png", metrics, current=current)
        return {"table_md": history.trend_table(db, metrics, current=current), "plot_png": Path(png).read_bytes()}


REPORT_TREND_MODELS = 5  # compared models in the report's trend (validate history shows every one)


def _report_metrics(summary: dict) -> list[str]:
    """The report's trend: the reference's box mAP@0.5:0.95 and the drops of the compared models with the
    largest loss now (a column per model of a 40-variant sweep does not fit a page)."""
    deltas = summary.get("deltas") or []
    ranked = sorted(deltas, key=lambda d: ((d.get("metrics", {}).get("bbox") or {}).get("mAP50_95") or 0.0))
    keys = [f"{deltas[0]['reference']}/bbox/mAP50_95"] if deltas else \
        [f"{m['name']}/bbox/mAP50_95" for m in summary.get("models", [])[:REPORT_TREND_MODELS]]
    keys += [f"delta/{d['model']}/bbox/mAP50_95" for d in ranked[:REPORT_TREND_MODELS]]
    return keys


def markdown(verdict) -> str | None:
    return None if verdict is None else gate_markdown(verdict)


def record(plan: Plan, summary: dict, summary_text: str, verdict, table_md: str) -> int | None:
    """After the outputs landed: append the run to the history and the verdict to the GitHub step summary."""
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        text = table_md + ("\n" + gate_markdown(verdict) if verdict is not None else "")
        try:
            with open(step, "a", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as e:
            raise InputError(f"{step}: cannot append to GITHUB_STEP_SUMMARY ({e.strerror or e})") from None
    if plan.options.history is None:
        return None
    rec = history.record_from_summary(summary, time=history.utc_now(), summary_text=summary_text, verdict=verdict,
                                      commit=history.git_commit(Path.cwd()))
    return history.append(plan.options.history, rec)
