"""What a gated, recorded run adds to a validation: the gate's verdict with bootstrap intervals, the
baseline, JUnit XML, the GitHub step summary and the history record.

The pieces are :mod:`validator.gate` (checks as data, verdict), :mod:`validator.history` (SQLite) and
:mod:`validator.metrics.bootstrap` (paired image resamples); this module wires them to a run: everything
that can be checked is checked before the long work (:func:`prepare`), the verdict is made from the summary
(:func:`judge`), and the record lands only after the outputs did (:func:`record`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from validator.errors import InputError


@dataclass(frozen=True)
class GateOptions:
    gate: Path | None = None  # --gate gate.toml
    baseline: str | None = None  # --baseline summary.json | last-accepted
    history: Path | None = None  # --history history.sqlite


@dataclass
class Plan:
    options: GateOptions
    gate: object | None = None  # validator.gate.Gate
    baseline_summary: dict | None = None  # --baseline FILE, read up front

    @property
    def resamples(self) -> int:
        return self.gate.bootstrap.resamples if self.gate is not None else 0


def prepare(options: GateOptions) -> Plan:
    """Read and check the gate file, the baseline and the history database before any inference."""
    from validator import gate as gate_mod
    from validator import history

    plan = Plan(options)
    if options.gate is not None:
        plan.gate = gate_mod.load_gate(options.gate)
    if options.baseline is not None:
        if options.baseline == "last-accepted":
            if options.history is None:
                raise InputError("--baseline last-accepted: give the history database with --history")
        else:
            plan.baseline_summary = gate_mod.load_summary(options.baseline)
    if options.history is not None and Path(options.history).exists():
        history.runs(options.history, limit=1)  # an unreadable or foreign file fails here, naming it
    return plan


def samples_for(plan: Plan, results: dict, reference: str | None, n_images: int, quiet: bool = False) -> dict | None:
    """``samples[model][iou_type]`` for the gate: every evaluation that kept a resampler, resampled on the
    same image sets (``gate.bootstrap``: resamples, seed)."""
    from validator.metrics.bootstrap import resample_indices, resampled
    from validator.progress import Progress

    if plan.resamples <= 0:
        return None
    idx = resample_indices(n_images, plan.resamples, plan.gate.bootstrap.seed)
    out: dict = {}
    types = sorted({t for res in results.values() for t in res})
    jobs = [(t, {m: res[t].resampler for m, res in results.items() if t in res and res[t].resampler is not None})
            for t in types]
    jobs = [(t, r) for t, r in jobs if r]
    total = sum(len(r) for _, r in jobs) * len(idx)
    with Progress(total, "validate: gate intervals", "resamples", quiet=quiet) as p:
        for t, resamplers in jobs:
            ref = reference if reference in resamplers else None
            for m, s in resampled(resamplers, ref, idx, done=p.update).items():
                out.setdefault(m, {})[t] = s
    return out or None


def judge(plan: Plan, summary: dict, samples: dict | None):
    """The verdict, or None when the run is not gated."""
    from validator import gate as gate_mod
    from validator import history

    if plan.gate is None:
        return None
    baseline = plan.baseline_summary
    if plan.options.baseline == "last-accepted":
        baseline = history.last_accepted(plan.options.history, like=summary, missing_ok=True)
    return gate_mod.evaluate_gate(plan.gate, summary, baseline=baseline, samples=samples)


def junit(plan: Plan, verdict) -> str:
    from validator import gate as gate_mod

    return gate_mod.junit_xml(verdict, getattr(plan.gate, "name", None) or "qharness")


def history_view(plan: Plan) -> dict | None:
    """The trend of the runs recorded so far (this run is appended once its outputs have landed), for the
    report: ``{"table_md", "plot_png"}``, or None without history."""
    import tempfile

    from validator import history

    db = plan.options.history
    if db is None or not Path(db).exists() or not history.runs(db, limit=1):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        png = history.trend_plot(db, Path(tmp) / "trend.png")
        return {"table_md": history.trend_table(db), "plot_png": Path(png).read_bytes()}


def markdown(verdict) -> str | None:
    from validator import gate as gate_mod

    return None if verdict is None else gate_mod.markdown(verdict)


def record(plan: Plan, summary: dict, summary_text: str, verdict, table_md: str) -> int | None:
    """After the outputs landed: append the run to the history and the verdict to the GitHub step summary."""
    from validator import gate as gate_mod
    from validator import history

    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        text = table_md + ("\n" + gate_mod.markdown(verdict) if verdict is not None else "")
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
