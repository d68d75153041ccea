"""The report only presents results: a model whose boxes it cannot draw, or any failure in it, never loses them.

YOLO26 predicts boxes with negative width or height (Ultralytics' own predict gives them too, e.g.
[27.5, 34.3, -27.5, 12.4] at score 0.285). COCO scores them; PIL's rectangle refused them, and because the
report was written before the tables and committed with them, the run exited 3 with every result lost.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from tests.test_contracts_e2e import DETS, HW, end2end_rows, make_dataset, yolo_channels
from tests.tiny_models import onnx_model
from validator.cli import main
from validator.report.plots import gallery_panel

RESULTS = ["summary.json", "table.md", "table.csv", "per_class.csv", "timing.json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("tiny"))


def _run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _inverted_models(tmp_path):
    """An end-to-end model and a one-to-many YOLO head, each with a confident box of negative width."""
    rows = end2end_rows()
    x1, y1, x2, y2 = DETS[0][0]
    rows[0, 0, :4] = (x2, y1, x1, y2)  # x2 < x1
    e2e = onnx_model(tmp_path / "e2e_inverted.onnx", [1, 3, HW, HW], outputs={"output0": rows})
    ch = yolo_channels()
    ch[2] *= -1  # every width negative
    head = onnx_model(tmp_path / "o2m_inverted.onnx", [1, 3, HW, HW], outputs={"output0": ch[None]})
    return e2e, head


def test_inverted_boxes_validate_with_a_report(tmp_path, data):
    for model in _inverted_models(tmp_path):
        out = tmp_path / model.stem
        code, stdout, stderr = _run("--model", model, "--data", data, "--out", out, "--quiet",
                                    "--cache-dir", tmp_path / "cache")
        assert code == 0, stderr
        preds = json.loads((out / "predictions" / f"{model.stem}.json").read_text())
        assert any(p["bbox"][2] < 0 for p in preds)  # written as predicted: COCO scores it as it is
        html = (out / "report.html").read_text()
        assert 'id="gallery"' in html and "could not be drawn" not in html


def test_gallery_panel_draws_negative_width_and_height():
    dets = [{"bbox": [40.0, 30.0, -20.0, 12.0], "category_id": 1, "score": 0.9},
            {"bbox": [10.0, 50.0, 15.0, -25.0], "category_id": 2, "score": 0.8}]
    gt = [{"bbox": [20.0, 30.0, 20.0, 12.0], "category_id": 1}]
    jpeg, w, h, n = gallery_panel(None, 64, 64, gt, dets, {"1": 0, "2": 1}, {"1": "a", "2": "b"})
    assert jpeg[:2] == b"\xff\xd8" and (w, h, n) == (64, 64, 2)
    from PIL import Image

    px = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=int)
    grey = np.array([200, 200, 200])
    # the inverted box is drawn where it is: its outline (x 20..40, y 30..42) is coloured, away from it grey
    assert np.abs(px[36, 20:23] - grey).sum() > 60 and np.abs(px[5, 5] - grey).sum() < 30


def _assert_results_landed(out, stem: str):
    for name in RESULTS:
        assert (out / name).is_file(), name
    assert (out / "predictions" / f"{stem}.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"][0]["metrics"]["bbox"]["mAP50"] == pytest.approx(1.0)


def test_a_failing_report_section_keeps_the_results_and_the_rest_of_the_page(tmp_path, data, monkeypatch):
    def broken(*_a, **_k):
        raise ValueError("x1 must be greater than or equal to x0")

    monkeypatch.setattr("validator.report.plots.gallery_panel", broken)
    model = onnx_model(tmp_path / "e2e.onnx", [1, 3, HW, HW], outputs={"output0": end2end_rows()})
    out = tmp_path / "out"
    code, stdout, stderr = _run("--model", model, "--data", data, "--out", out, "--quiet", "--no-cache")
    assert code == 3
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "report section 'gallery'" in lines[0] and "x1 must be" in lines[0]
    assert str(out) in lines[0] and "traceback saved to" in lines[0] and "Traceback" not in stderr
    _assert_results_landed(out, "e2e")
    html = (out / "report.html").read_text()
    assert 'id="gallery"' in html and "could not be drawn" in html and 'id="provenance"' in html
    assert "| Model |" in stdout  # the table was printed too


def test_a_failing_report_keeps_the_results(tmp_path, data, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr("validator.report.assemble.report_data", broken)
    model = onnx_model(tmp_path / "e2e.onnx", [1, 3, HW, HW], outputs={"output0": end2end_rows()})
    out = tmp_path / "out"
    code, _, stderr = _run("--model", model, "--data", data, "--out", out, "--quiet", "--no-cache")
    assert code == 3
    assert "internal error in the report stage: RuntimeError: boom" in stderr
    _assert_results_landed(out, "e2e")
    assert not (out / "report.html").exists()
