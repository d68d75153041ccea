"""Developer and CI entry points. `nox -s demo` and `nox -s tests` are the README's two commands."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
DEMO_DATA = ROOT / "datasets" / "shapes-demo"
MODELS = ROOT / "tests" / "fixtures" / "models"
# the demo's validate output folders: committed example reports (report.html, table.md and the .qharness
# marker that lets validate replace them; tests/test_demo.py checks a fresh clone has it)
DEMO_REPORTS = ("reports/demo-shapes-det", "reports/demo-shapes-seg", "reports/demo-quantize/report")


def _chromium(session: nox.Session) -> None:
    """Debian's Chromium for the report's browser tests (they skip where it cannot be installed)."""
    import shutil

    if shutil.which("chromium"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", external=True, env=env)
    else:
        session.warn("chromium not installed and cannot be (not root or no apt-get): browser tests will skip")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (unit, parity vs pycocotools, end-to-end CLI, bad input, the report in Chromium)."""
    session.install("-e", ".[dev,ray]")  # ray: the --ray tests start a local cluster (loopback, 2 CPUs)
    # tidecv, only to check validator/diagnose/error_types.py equal to it: without its plotting extras'
    # opencv-python (opencv-python-headless of [dev] gives cv2)
    session.install("--no-deps", "tidecv==1.0.1")
    session.install("appdirs", "seaborn", "pandas")
    _chromium(session)
    # pytest's exit code 5 ("no tests collected") is a failure here, as any non-zero code is.
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """Validate the bundled fixture models (float ONNX vs INT8 TFLite) on a held-out shapes split, the det pair
    under the example gate; then quantize the det model and validate every variant in one table.

    Paths are relative to the repository (nox runs here), so the committed example reports (reports/demo-*/
    report.html and table.md) name files the way a reader of the repo sees them.
    """
    session.install("-e", ".")
    data, models = "datasets/shapes-demo", "tests/fixtures/models"
    if not (DEMO_DATA / "annotations.json").exists():
        session.run("python", "-m", "validator.datasets", "shapes", "--out", data, "--images", "200", "--seed", "3")
    for stem in ("shapes-det", "shapes-seg"):
        gate = ["--gate", "examples/gate.toml", "--diagnose"] if stem == "shapes-det" else []
        session.run("validate", "--float", f"{models}/{stem}.onnx", "--int8", f"{models}/{stem}.int8.tflite",
                    "--data", data, "--out", f"reports/demo-{stem}", *gate, *session.posargs)
        assert f"reports/demo-{stem}" in DEMO_REPORTS
    # The quantizer: INT8 variants of the det fixture under three strategies and both output layouts, from
    # 64 calibration images of another seed (the committed float TFLite conversions are found beside the
    # ONNX: no TensorFlow), all validated in one table beside the float and the upstream INT8 models.
    calib = "datasets/shapes-calib"
    if not (ROOT / calib / "annotations.json").exists():
        session.run("python", "-m", "validator.datasets", "shapes", "--out", calib, "--images", "72", "--seed", "11")
    variants = "reports/demo-quantize/variants"
    session.run("quantize", "--model", f"{models}/shapes-det.onnx", "--calib", calib, "--samples", "64",
                "--strategy", "minmax,percentile:99.99,mse", "--outputs", "split,monolithic", "--out", variants,
                "--force")  # the demo's own variants of its last run are replaced
    session.run("validate", "--float", f"{models}/shapes-det.onnx", "--int8", f"{models}/shapes-det.int8.tflite",
                "--manifest", f"{variants}/variants.json", "--data", data, "--out", DEMO_REPORTS[2],
                "--diagnose", "--diagnose-layers", "2", *session.posargs)  # why each variant lost, 2 layers tried


@nox.session
def bench(session: nox.Session) -> None:
    """Speed/memory benchmarks; results printed as side-by-side ratios and kept as JSON per platform."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(name="bench-quantize")
def bench_quantize(session: nox.Session) -> None:
    """Calibration peak RSS and time at 50/200/500 samples (256 and 640 px) beside ai-edge-quantizer's own
    all-in-memory calibrate(); seconds per variant. Results in benchmarks/results/quantize-<platform>.json."""
    session.install("-e", ".")
    session.run("python", "benchmarks/quantize.py", *session.posargs)


@nox.session
def convert(session: nox.Session) -> None:
    """ONNX -> float TFLite conversion tests (tests/test_quantizer_convert.py with real onnx2tf runs).

    onnx2tf 1.29.24 and TensorFlow 2.19 live in an environment of their own (their exact pins clash with
    ai-edge-quantizer's): ``QHARNESS_ONNX2TF`` if set, else .nox/onnx2tf, made by ``python -m quantizer.convert
    setup`` (~2.6 GB from PyPI, a few minutes, once).
    """
    session.install("-e", ".[dev]")
    venv = Path(os.environ.get("QHARNESS_ONNX2TF") or ROOT / ".nox" / "onnx2tf")
    py = venv / "bin" / "python" if venv.is_dir() or not venv.exists() else venv
    if not py.exists():
        session.run("python", "-m", "quantizer.convert", "setup", "--venv", str(venv))
    session.run("pytest", "tests/test_quantizer_convert.py", *session.posargs,
                env={"QHARNESS_ONNX2TF": str(py), "QHARNESS_CONVERT_TESTS": "1"})


@nox.session(python=False)
def fixtures(session: nox.Session) -> None:
    """Re-train and re-export the fixture models (slow, dev-only: ~1 h on 2 CPU cores; never in CI).

    Uses a venv of its own outside the repo because torch+torchvision are ~6 GB; they come from the
    local wheel files on the dev machines (see tests/fixtures/README.md).
    """
    venv = Path(os.environ.get("QHARNESS_FIXTURES_VENV", ROOT / ".nox" / "fixtures-tools"))
    py = venv / "bin" / "python"
    if not py.exists():
        session.run("python3", "-m", "venv", str(venv), external=True)
        session.run(str(py), "-m", "pip", "install", "-e", ".[fixtures]", external=True)
    session.run(str(py), "tests/fixtures/make_fixtures.py", *session.posargs, external=True)
