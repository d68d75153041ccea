"""quantize --tune: the tune split checked disjoint by content, the search bounded by --budget, every scored
candidate in search.json, the winner's manifest naming every op's precision, an int16 winner that runs in
LiteRT and through validate, and a search interrupted by Ctrl-C that resumes from its own record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quantizer.cli import main as quantize
from tests.conftest import MODELS
from validator.cli import main as validate

DET = MODELS / "shapes-det.onnx"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from validator.datasets.shapes import ShapesConfig, generate

    root = tmp_path_factory.mktemp("tune-data")
    generate(root / "calib", ShapesConfig(images=10, seed=11))
    generate(root / "tune", ShapesConfig(images=16, seed=21))
    generate(root / "eval", ShapesConfig(images=12, seed=3))
    return {k: root / k for k in ("calib", "tune", "eval")}


def _args(data, out: Path, *extra) -> list[str]:
    return ["--model", str(DET), "--calib", str(data["calib"]), "--samples", "8", "--strategy", "minmax",
            "--outputs", "split", "--check-images", "2", "--out", str(out), "--quiet", "--tune", str(data["tune"]),
            *extra]


def test_tune_images_shared_with_calibration_or_eval_are_refused(data, tmp_path, capsys):
    # the calibration folder's own images under other names: the same content
    copy = tmp_path / "tune-copy"
    shutil.copytree(data["tune"], copy)
    gt = json.loads((copy / "annotations.json").read_text())
    victim = gt["images"][0]["file_name"]
    shutil.copy(data["calib"] / "images" / sorted(p.name for p in (data["calib"] / "images").iterdir())[0],
                copy / "images" / victim)
    assert quantize(_args({**data, "tune": copy}, tmp_path / "o1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibration" in err and victim in err and "by content" in err
    assert not (tmp_path / "o1").exists()  # refused before the long work
    assert quantize(_args(data, tmp_path / "o2", "--eval", str(data["tune"]))) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluation (--eval)" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_search_with_int16_stops_at_the_budget_and_the_winner_runs(data, tmp_path):
    from validator.diagnose.graph import op_audit
    from validator.runners.tflite import interpreter_class

    out = tmp_path / "v"
    assert quantize(_args(data, out, "--eval", str(data["eval"]), "--allow", "int16", "--max-drop", "0",
                          "--tune-layers", "2", "--budget", "1")) == 0
    doc = json.loads((out / "search.json").read_text())
    assert doc["complete"] and doc["allow"] == "int16"
    kinds = [r["kind"] for r in doc["candidates"]]
    assert kinds.count("variant") == 1 and kinds.count("promotion") <= 1
    assert 1 <= kinds.count("probe") <= 2 + 2  # --tune-layers inner layers + the 2 output tensors
    for r in doc["candidates"]:
        if r.get("model"):
            assert set(r["tune"]) >= {"mAP50_95", "mAP50", "ms_per_image"} and r["bytes"] > 0
            assert r["drop"] == pytest.approx(doc["float"]["mAP50_95"] - r["tune"]["mAP50_95"], abs=1e-3)
    index = json.loads((out / "variants.json").read_text())
    tuned = [v for v in index["variants"] if v["name"].endswith(".tuned")]
    # --max-drop 0 cannot hold, so a probe that won is promoted (the int16 box output lifts the box floor)
    (v,) = tuned
    assert doc["winner"] == v["name"] and doc["stopped"]
    path = out / v["path"]
    it = interpreter_class()(model_path=str(path))
    assert len(v["op_precisions"]) == len(it._get_ops_details())  # noqa: SLF001  every op named
    audit = op_audit(path)
    assert sum(r["precision"] == "int16" for r in v["op_precisions"]) == audit["int16"] > 0
    assert v["tune"]["drop"] == next(r["drop"] for r in doc["candidates"] if r.get("sha256") == v["sha256"])
    # through validate: the tuned variant is a row, and the diagnosis' op audit lists its int16 ops
    o = tmp_path / "r"
    assert validate(["--float", str(DET), "--manifest", str(out / "variants.json"), "--data", str(data["eval"]),
                     "--out", str(o), "--quiet", "--diagnose", "--diagnose-layers", "0"]) == 0
    rows = {m["name"]: m for m in json.loads((o / "summary.json").read_text())["models"]}
    assert v["name"] in rows and rows[v["name"]]["metrics"]["bbox"]["mAP50_95"] > 0
    assert rows[v["name"]]["label"].startswith("TFLite INT8+INT16 mixed")
    diag = {m["model"]: m for m in json.loads((o / "diagnostics.json").read_text())["models"]}
    assert diag[v["name"]]["op_audit"]["int16"] == audit["int16"]


@pytest.mark.slow
def test_interrupted_search_leaves_a_valid_record_and_resumes(data, tmp_path, monkeypatch):
    from validator.diagnose import score

    real = score.Scorer.metrics
    calls = {"n": 0}

    def flaky(self, model, suffix=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, model, suffix)

    monkeypatch.setattr(score.Scorer, "metrics", flaky)
    out = tmp_path / "v"
    args = _args(data, out, "--allow", "float", "--max-drop", "0", "--tune-layers", "2", "--budget", "1")
    assert quantize(args) == 130
    doc = json.loads((out / "search.json").read_text())
    assert doc["complete"] is False and len(doc["candidates"]) == 1  # float + 1 variant scored before Ctrl-C
    done = {r["sha256"] for r in doc["candidates"]}
    monkeypatch.setattr(score.Scorer, "metrics", real)
    assert quantize([*args, "--force"]) == 0
    doc = json.loads((out / "search.json").read_text())
    assert doc["complete"]
    again = [r for r in doc["candidates"] if r.get("sha256") in done]
    assert again and all(r["cached"] for r in again)


@pytest.mark.slow
def test_a_16x8_model_with_an_int16_input_validates_on_the_manifest_input_range(data, tmp_path):
    """Every activation int16 (ai-edge-quantizer's 16x8 recipe) gives an int16 *input*, symmetric: its own
    range (-1..1) says nothing about the 0..1 data it was calibrated on; the manifest does."""
    recipe = json.loads((Path(__file__).parents[1] / "quantizer" / "recipes" / "static_int8.json").read_text())
    recipe[0]["op_config"]["activation_tensor_config"].update(num_bits=16, symmetric=True)
    (tmp_path / "a16w8.json").write_text(json.dumps(recipe))
    out = tmp_path / "v"
    assert quantize(["--model", str(DET), "--calib", str(data["calib"]), "--samples", "8", "--strategy", "minmax",
                     "--outputs", "split", "--check-images", "2", "--recipe", str(tmp_path / "a16w8.json"),
                     "--out", str(out), "--quiet"]) == 0
    o = tmp_path / "r"
    assert validate(["--float", str(DET), "--manifest", str(out / "variants.json"), "--data", str(data["eval"]),
                     "--out", str(o), "--quiet"]) == 0
    ref, m = json.loads((o / "summary.json").read_text())["models"]
    assert m["input"]["dtype"] == "int16" and m["label"].startswith("TFLite INT16x8")
    assert m["input_transform"]["range"] == "0,1" and "quantize manifest" in m["input_transform"]["source"]
    assert not m["input_transform"]["raw_pixels"]
    # 16-bit activations keep the float model's accuracy (int8 ones lose ~5 pts on this fixture)
    assert m["metrics"]["bbox"]["mAP50_95"] > ref["metrics"]["bbox"]["mAP50_95"] - 0.02


def test_a_candidate_may_not_buy_box_map_with_mask_map():
    from quantizer.tune import Search, _better

    rec = Search(Path("/nonexistent/search.json"), {"tune_sha256": "x"})
    base = {"model": "b", "tune": {"mAP50_95": 48.0}, "mask_drop": 0.3}
    up = {"model": "c", "tune": {"mAP50_95": 49.0}, "mask_drop": 0.7}
    down = {"model": "d", "tune": {"mAP50_95": 47.0}, "mask_drop": 0.1}
    assert _better(up, base, rec)  # detection models (no limit): box mAP decides
    rec.mask_limit = 0.5
    assert not _better(up, base, rec) and not _better(down, base, rec)
    assert _better({**up, "mask_drop": 0.5}, base, rec)
    assert not _better({"model": None, "error": "x"}, base, rec)
