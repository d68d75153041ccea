"""The example gate on the fixtures: the upstream INT8 export passes it, a broken INT8 of the same model
(the quantizer's monolithic per-tensor min-max variant calibrated on 4 images: scores and pixel boxes share
one int8 scale, so every score rounds to 0) fails it, named in junit.xml and the report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT
from validator.cli import main

GATE = ROOT / "examples" / "gate.toml"


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("gate-split")
    generate(out, ShapesConfig(images=60, seed=3))
    return out


def _gated(split: Path, int8: Path, out: Path) -> int:
    return main(["--float", str(MODELS / "shapes-det.onnx"), "--int8", str(int8), "--data", str(split),
                 "--gate", str(GATE), "--out", str(out), "--quiet"])


def test_upstream_int8_passes_the_example_gate(split, tmp_path):
    assert _gated(split, MODELS / "shapes-det.int8.tflite", tmp_path / "o") == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["gate"]["passed"] and s["gate"]["counts"]["passed"] >= 4


def test_degraded_int8_fails_it_named_in_junit_and_report(split, tmp_path):
    out = tmp_path / "o"
    assert _gated(split, MODELS / "shapes-det.degraded.tflite", out) == 1
    failed = [c.get("name") for c in ET.fromstring((out / "junit.xml").read_text()).iter("testcase")
              if c.find("failure") is not None]
    assert "check[2]: box mAP@0.5 drop" in failed and len(failed) >= 3
    html = (out / "report.html").read_text()
    assert "FAIL" in html and "box mAP@0.5 drop" in html
    # and in the printed table: the verdict names it, and each failed check has its line with value and limit
    table = (out / "table.md").read_text()
    assert "Gate FAILED" in table and "check[2] box mAP@0.5 drop, shapes-det.degraded" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("- FAILED check[2] box mAP@0.5 drop"))
    assert "> limit 4.5 pts" in line and "CI [" in line
