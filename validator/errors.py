"""User-facing errors: one line naming the file and the problem, exit code 2, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(Exception):
    """Bad input from the user (file missing, unreadable, schema-invalid, mismatched): exit code 2."""


@dataclass(frozen=True)
class StageFailure:
    """An internal error in a stage that only presents results already computed (the report, a plot in it).

    Such a failure must not lose the results: the run writes everything else (summary.json, the tables,
    predictions, junit.xml), records it, and then exits 3 with one line naming the stage.
    """

    stage: str  # e.g. "report", "report section 'gallery'"
    error: str  # "ValueError: x1 must be greater than or equal to x0"
    traceback: str

    @classmethod
    def capture(cls, stage: str, exc: BaseException) -> StageFailure:
        import traceback

        msg = " ".join(str(exc).split())[:200]
        return cls(stage, f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__,
                   "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
