"""The README's first command on a fresh clone: the demo's output folders, as committed, may be replaced.

They hold committed example reports; validate replaces a folder only when it holds the ``.qharness`` marker
it writes (so ``--out .`` can never delete a user's files). The marker was not committed, and on a fresh
clone ``nox -s demo`` exited 1 ("--out folder exists and holds files validate did not write").
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from validator.report.outputs import OutputDir


def _demo_reports() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DEMO_REPORTS


def _tracked(folder: str) -> list[str]:
    try:
        r = subprocess.run(["git", "ls-files", "--", folder], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ln for ln in r.stdout.splitlines() if ln]


@pytest.mark.parametrize("folder", _demo_reports())
def test_a_fresh_clone_lets_the_demo_replace_its_committed_reports(folder, tmp_path):
    files = _tracked(folder)
    assert files, f"{folder}: nothing committed"
    clone = tmp_path / "clone"
    for rel in files:  # exactly what a fresh clone holds there
        dst = clone / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, dst)
    OutputDir(clone / folder).check()  # raised InputError before the marker was committed


def test_ci_runs_the_readme_commands_verbatim():
    """The README's two set-up commands (demo, tests) are what .ci/run runs, so CI fails when they do."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.split("#", 1)[0].strip() for ln in block.strip().splitlines()]
    assert len(commands) == 2 and commands[0].endswith("nox -s demo") and commands[1].endswith("nox -s tests")
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci and commands[1] in ci
    assert ci.index(commands[0]) < ci.index(commands[1])
