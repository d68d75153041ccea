"""`quantize` end to end on the det and seg fixtures (no TensorFlow: the committed float TFLite conversions
beside the ONNX are found by sha256), variants load in the runtimes and validate, manifests and
variants.json say what was built; bad input exits 2 with one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from quantizer.cli import main as quantize_main
from quantizer.manifest import INDEX_NAME, REQUIRED, load_index
from tests.conftest import MODELS
from validator.cli import main as validate_main


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """14 calibration images (seed 21), of which 10 calibrate and 4 are held out for the SQNR check."""
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("calib")
    generate(out, ShapesConfig(images=14, seed=21))
    return out


def quantize(capsys, *args) -> tuple[int, str, str]:
    rc = quantize_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def det_run(calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("det-variants")
    stats = tmp_path_factory.mktemp("stats")
    rc = quantize_main(["--model", str(MODELS / "shapes-det.onnx"), "--calib", str(calib), "--samples", "6,10",
                        "--strategy", "minmax,percentile:99.9,fp16", "--granularity", "channel,tensor",
                        "--io", "int8,uint8", "--outputs", "split", "--format", "tflite,onnx",
                        "--out", str(out), "--stats-dir", str(stats), "--check-images", "3", "--quiet"])
    assert rc == 0
    return out, stats


def test_variants_are_the_cross_product(det_run):
    out, _ = det_run
    index = load_index(out / INDEX_NAME)
    names = [v["name"] for v in index["variants"]]
    # tflite: 2 strategies x 2 counts x 2 granularities x 2 io, + fp16; onnx: 2 x 2 x 2
    assert len(names) == 16 + 1 + 8 and len(set(names)) == len(names)
    assert "shapes-det.split.percentile99.9.n10.tensor.uint8" in names
    assert "shapes-det.split.minmax.n6.channel.qdq" in names
    assert "shapes-det.split.fp16.float" in names
    for v in index["variants"]:
        assert all(k in v for k in REQUIRED)
        assert (out / v["path"]).is_file() and (out / f"{v['path']}.json").is_file()
        own = json.loads((out / f"{v['path']}.json").read_text())
        assert own == v


def test_manifest_contents(det_run):
    out, _ = det_run
    index = load_index(out / INDEX_NAME)
    assert index["float_model"]["sha256"] == json.loads(
        (MODELS / "shapes-det.split.float32.json").read_text())["source_sha256"]
    v = next(v for v in index["variants"] if v["name"] == "shapes-det.split.percentile99.9.n6.tensor.uint8")
    assert v["strategy"] == {"name": "percentile", "params": {"percentile": 99.9}, "spec": "percentile:99.9"}
    assert (v["samples"], v["granularity"], v["layout"], v["model_format"], v["precision"]) == \
        (6, "tensor", "split", "tflite", "int8")
    assert v["io"]["input"]["dtype"] == "uint8" and v["io"]["input"]["zero_point"] == 0
    assert v["io"]["input"]["scale"] == pytest.approx(1 / 255)
    assert [o["dtype"] for o in v["io"]["outputs"]] == ["int8", "int8"]
    cal = v["calibration"]
    assert cal["count"] == 6 and cal["images"] == [f"{i:012d}.jpg" for i in range(1, 7)]
    assert cal["input_range"] == [0.0, 1.0] and cal["input_transform"]["range"] == "0,1"
    assert v["parent_model"]["path"].endswith("shapes-det.split.float32.tflite")
    assert v["check"]["held_out"] and v["check"]["images"] == [f"{i:012d}.jpg" for i in range(11, 14)]
    assert [r["role"] for r in v["check"]["outputs"]] == ["boxes", "scores"]
    assert all(r["sqnr_db"] > 10 for r in v["check"]["outputs"])
    assert v["tools"]["ai-edge-quantizer"] and v["tools"]["onnx2tf"] == "1.29.24"
    qdq = next(v for v in index["variants"] if v["model_format"] == "onnx")
    assert qdq["recipe"] is None and qdq["io"]["input"]["dtype"] == "float32"
    assert (out / "shapes-det.split.float32.onnx").is_file()  # the ONNX parent of the QDQ variants


def test_uint8_and_int8_variants_agree_bit_for_bit(det_run):
    from ai_edge_litert.interpreter import Interpreter

    out, _ = det_run
    a = Interpreter(str(out / "shapes-det.split.minmax.n10.channel.int8.tflite"))
    b = Interpreter(str(out / "shapes-det.split.minmax.n10.channel.uint8.tflite"))
    a.allocate_tensors()
    b.allocate_tensors()
    x = np.random.default_rng(3).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    a.set_tensor(a.get_input_details()[0]["index"], (x.astype(np.int16) - 128).astype(np.int8))
    b.set_tensor(b.get_input_details()[0]["index"], x)
    a.invoke()
    b.invoke()
    for oa, ob in zip(a.get_output_details(), b.get_output_details(), strict=True):
        np.testing.assert_array_equal(a.get_tensor(oa["index"]), b.get_tensor(ob["index"]))


def test_statistics_are_reused(det_run, calib, tmp_path, capsys):
    _, stats = det_run
    rc, out, err = quantize(capsys, "--model", MODELS / "shapes-det.split.float32.tflite", "--calib", calib,
                            "--samples", "10", "--strategy", "mse", "--out", tmp_path / "v", "--stats-dir", stats)
    assert rc == 0, err
    assert "cached: [10]" in err and "pass 1/2" not in err
    assert "shapes-det.split.mse.n10.channel.int8" in out  # stem and layout from the fixture's record
    index = load_index(tmp_path / "v" / INDEX_NAME)
    assert index["variants"][0]["calibration"]["statistics_cached"] is True


def test_rerun_into_the_same_folder_is_refused_without_force_and_says_what_force_replaces(calib, tmp_path, capsys):
    """An earlier run's variants were deleted without a word; now the folder is refused (exit 2, before any
    work) unless --force, which names what it replaces and keeps only what the new run lists."""
    args = ["--model", MODELS / "shapes-det.split.float32.tflite", "--calib", calib, "--samples", "4",
            "--out", tmp_path, "--stats-dir", tmp_path / "stats"]
    assert quantize(capsys, *args, "--strategy", "minmax,mse", "--quiet")[0] == 0
    before = sorted(p.name for p in tmp_path.glob("*.tflite*"))
    rc, _, err = quantize(capsys, *args, "--strategy", "mse")
    assert rc == 2 and "holds 2 variants of an earlier quantize run" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and sorted(p.name for p in tmp_path.glob("*.tflite*")) == before
    rc, _, err = quantize(capsys, *args, "--strategy", "mse", "--force")
    assert rc == 0, err
    assert "replacing the 2 variants of the earlier run" in err and "shapes-det.split.minmax.n4.channel.int8" in err
    left = sorted(p.name for p in tmp_path.glob("*.tflite*"))
    assert left == ["shapes-det.split.mse.n4.channel.int8.tflite", "shapes-det.split.mse.n4.channel.int8.tflite.json"]
    index = load_index(tmp_path / INDEX_NAME)
    assert index["complete"] is True and index["planned"] == 1


@pytest.mark.parametrize("when", ["statistics", "second_variant"])
def test_ctrl_c_leaves_an_index_of_the_finished_variants(when, calib, tmp_path, capsys, monkeypatch):
    import quantizer.run as qrun

    if when == "statistics":
        def stop(*_a, **_k):
            raise KeyboardInterrupt
        monkeypatch.setattr(qrun, "statistics", stop)
    else:
        real = qrun._tflite
        calls = []

        def stop_second(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*a, **k)
        monkeypatch.setattr(qrun, "_tflite", stop_second)
    out = tmp_path / "v"
    rc, _, err = quantize(capsys, "--model", MODELS / "shapes-det.split.float32.tflite", "--calib", calib,
                          "--samples", "4", "--strategy", "minmax,mse", "--out", out, "--stats-dir", tmp_path / "s")
    assert rc == 130
    index = load_index(out / INDEX_NAME)
    assert index is not None and index["complete"] is False and index["planned"] == 2
    kept = [v["name"] for v in index["variants"]]
    if when == "statistics":
        assert kept == [] and "before any variant was finished" in err.splitlines()[-1]
    else:
        assert kept == ["shapes-det.split.minmax.n4.channel.int8"]
        assert "kept the 1 of 2 variants finished" in err.splitlines()[-1]
        assert all((out / v["path"]).is_file() and (out / f"{v['path']}.json").is_file() for v in index["variants"])
        assert not (out / "shapes-det.split.mse.n4.channel.int8.tflite").exists()
        # validate reads what is there, and says the run was cut short
        r = validate_main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(out / INDEX_NAME),
                           "--data", str(calib), "--limit", "3", "--out", str(tmp_path / "r"), "--quiet",
                           "--no-cache"])
        assert r == 0
        notes = json.loads((tmp_path / "r" / "summary.json").read_text())["models"][1]["notes"]
        assert any("interrupted quantize run: 1 of 2 planned variants" in n for n in notes)


@pytest.mark.slow
def test_det_variants_validate_in_one_table_from_the_manifest(det_run, shapes_small, tmp_path):
    out, _ = det_run
    index = load_index(out / INDEX_NAME)
    assert validate_main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest", str(out / INDEX_NAME),
                          "--data", str(shapes_small), "--limit", "6", "--out", str(tmp_path / "r"), "--quiet",
                          "--no-cache"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["shapes-det"] + [v["name"] for v in index["variants"]]
    labels = {m["name"]: m["label"] for m in summary["models"]}
    assert labels["shapes-det.split.minmax.n10.channel.uint8"].startswith("TFLite INT8")
    assert labels["shapes-det.split.minmax.n10.channel.qdq"].startswith("ONNX INT8 (QDQ)")
    assert labels["shapes-det.split.fp16.float"].startswith("TFLite float16")
    assert all("yolo_split" in m["contract"] for m in summary["models"][1:])
    assert not any(m.get("notes") for m in summary["models"])  # calibrated elsewhere: no overlap note


@pytest.mark.slow
def test_monolithic_control_and_calibration_overlap(shapes_small, tmp_path, capsys):
    rc, _, err = quantize(capsys, "--model", MODELS / "shapes-det.onnx", "--calib", shapes_small, "--samples", "10",
                          "--outputs", "monolithic", "--out", tmp_path / "mono", "--stats-dir", tmp_path / "stats")
    assert rc == 0, err
    (mono,) = load_index(tmp_path / "mono" / INDEX_NAME)["variants"]
    assert [r["role"] for r in mono["check"]["outputs"]] == ["boxes", "scores"]
    assert mono["check"]["outputs"][1]["sqnr_db"] < 5  # the known-bad control: scores share the box scale
    # warned at build time (also under --quiet), recorded in the manifest, and carried into validate's notes
    warn = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "scores output" in warn[0] and "below 10 dB" in warn[0]
    assert mono["warnings"] and "SQNR" in mono["warnings"][0]
    assert validate_main(["--float", str(MODELS / "shapes-det.onnx"), "--manifest",
                          str(tmp_path / "mono" / INDEX_NAME), "--data", str(shapes_small), "--limit", "12",
                          "--out", str(tmp_path / "r"), "--quiet", "--no-cache"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    notes = summary["models"][1].get("notes", [])
    assert any("calibrated on 10 of the images evaluated here" in n for n in notes)
    assert any(n.startswith("quantize warned: output") for n in notes)


@pytest.mark.slow
def test_seg_variants_carry_masks(calib, shapes_small, tmp_path, capsys):
    rc, out, err = quantize(capsys, "--model", MODELS / "shapes-seg.onnx", "--calib", calib, "--samples", "8",
                            "--strategy", "minmax", "--io", "uint8", "--out", tmp_path / "v",
                            "--stats-dir", tmp_path / "stats", "--check-images", "2")
    assert rc == 0, err
    index = load_index(tmp_path / "v" / INDEX_NAME)
    (v,) = index["variants"]
    # onnx2tf orders the outputs its own way; the validator and the check read them by shape
    assert sorted(r["role"] for r in v["check"]["outputs"]) == ["boxes", "coefs", "protos", "scores"]
    assert all(r["sqnr_db"] > 10 for r in v["check"]["outputs"])
    assert [1, 64, 64, 32] in [o["shape"] for o in v["io"]["outputs"]]
    model = tmp_path / "v" / v["path"]
    assert validate_main(["--float", str(MODELS / "shapes-seg.onnx"), "--int8", str(model), "--data",
                          str(shapes_small), "--limit", "8", "--out", str(tmp_path / "r"), "--quiet",
                          "--no-cache"]) == 0
    table = (tmp_path / "r" / "table.md").read_text()
    assert "Mask mAP@0.5" in table and v["name"] in table


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("case", ["missing_model", "quantized_model", "not_a_model", "missing_calib",
                                  "too_few_images", "onnx_format_from_tflite", "outputs_for_tflite",
                                  "bad_recipe", "unwritable_out", "no_signature"])
def test_bad_input_exits_2_with_one_line(case, calib, tmp_path, capsys):
    model = MODELS / "shapes-det.split.float32.tflite"
    args = {"--model": model, "--calib": calib, "--out": tmp_path / "out", "--samples": "4",
            "--stats-dir": tmp_path / "stats"}
    extra: list = []
    named = None
    if case == "missing_model":
        args["--model"] = named = tmp_path / "nope.onnx"
    elif case == "quantized_model":
        args["--model"] = named = MODELS / "shapes-det.int8.tflite"
    elif case == "not_a_model":
        named = tmp_path / "junk.tflite"
        named.write_bytes(b"not a flatbuffer")
        args["--model"] = named
    elif case == "missing_calib":
        args["--calib"] = named = tmp_path / "no-images"
    elif case == "too_few_images":
        args["--samples"] = "500"
        named = calib
    elif case == "onnx_format_from_tflite":
        extra = ["--format", "onnx"]
        named = model
    elif case == "outputs_for_tflite":
        extra = ["--outputs", "monolithic"]
        named = model
    elif case == "bad_recipe":
        named = tmp_path / "r.json"
        named.write_text("[]")
        extra = ["--recipe", named]
    elif case == "no_signature":  # a float TFLite without a SignatureDef: ai-edge-quantizer cannot take it
        args["--model"] = named = MODELS / "third_party" / "yolo_float_m1p1.tflite"
    elif case == "unwritable_out":
        named = tmp_path / "file"
        named.write_text("x")
        args["--out"] = named / "sub"
    flat = [str(x) for kv in args.items() for x in kv] + [str(x) for x in extra]
    rc, out, err = quantize(capsys, *flat)
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("quantize: error:") and str(named) in lines[0], err
    assert "Traceback" not in err


def test_onnx_without_conversion_or_converter_exits_2(calib, tmp_path, capsys, monkeypatch):
    model = tmp_path / "copy.onnx"
    shutil.copy(MODELS / "shapes-det.onnx", model)  # no float TFLite beside it
    monkeypatch.setenv("QHARNESS_ONNX2TF", str(tmp_path / "missing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc, out, err = quantize(capsys, "--model", model, "--calib", calib, "--samples", "4", "--out", tmp_path / "o")
    assert rc == 2 and "python -m quantizer.convert setup" in err and str(model) in err


@pytest.mark.parametrize("args, msg", [(["--strategy", "kl"], "unknown strategy"),
                                       (["--samples", "0"], ">= 1"), (["--granularity", "row"], "granularity"),
                                       (["--io", "int16"], "input type"), (["--bins", "7"], "--bins")])
def test_bad_options_exit_2(args, msg, calib, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        quantize_main(["--model", str(MODELS / "shapes-det.onnx"), "--calib", str(calib), "--out", str(tmp_path),
                       *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err
