"""Input conventions: which values a model receives for the pixels 0..255, decided from the input's
quantization, then the model's own metadata, then 0..1 (`--input-range` overrides), and applied exactly.

Unit tests check the decision and the lookup tables against hand-computed values. The end-to-end tests run
tiny models whose one detection's score is ``0.5 + 0.1 * mean(real input)`` (tests/tiny_models.py: every
output is ``constant + gain * mean(dequantized input)``): on a uniform grey image the score written to
predictions/<model>.json shows exactly what the model received, and a quantized model must give the same
detection as its float twin. Under the old rule (every quantized input fed ``x / 255`` quantized), the
uint8 1/128 & 128 model scored 0.547 instead of 0.494.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODELS
from tests.tiny_models import anchor_grid, tflite_model
from validator.cli import main
from validator.data.preprocess import InputMaker, choose_transform, to_input
from validator.tensors import InputSpec

THIRD_PARTY = MODELS / "third_party"
M1P1_META = THIRD_PARTY / "yolo_float_m1p1.tflite"  # NormalizationOptions mean 127.5, std 127.5 (tflite-support)
IMAGENET_META = THIRD_PARTY / "yolo_float_imagenet.tflite"  # per-channel ImageNet mean/std (tflite-support)


def _spec(dtype: str, scale: float = 0.0, zp: int = 0, layout: str = "NHWC") -> InputSpec:
    shape = (1, 2, 3, 3) if layout == "NHWC" else (1, 3, 2, 3)
    return InputSpec("x", shape, dtype, layout, (2, 3), scale, zp)


def _canvas() -> np.ndarray:
    c = np.zeros((2, 3, 3), np.uint8)
    c[..., 0] = [[0, 1, 127], [128, 254, 255]]
    c[..., 1] = [[10, 20, 30], [40, 50, 60]]
    c[..., 2] = [[200, 201, 202], [203, 204, 205]]
    return c


# ------------------------------------------------------------------------------------------ decision
@pytest.mark.parametrize("dtype,scale,zp,label", [
    ("uint8", 1 / 128, 128, "-1,1"),  # TF object-detection models: raw pixels in
    ("uint8", 1 / 255, 0, "0,1"),
    ("int8", 1 / 255, -128, "0,1"),  # pixel - 128
    ("int8", 1 / 128, 0, "-1,1"),
    ("uint8", 1.0, 0, "0,255"),
])
def test_exact_quantized_conventions_take_raw_pixels(dtype, scale, zp, label):
    spec = _spec(dtype, scale, zp)
    t = choose_transform(spec)
    assert (t.label, t.raw) == (label, True)
    assert "quantization" in t.source
    x = to_input(_canvas(), spec)
    shift = -128 if dtype == "int8" else 0
    np.testing.assert_array_equal(x[0].astype(int), _canvas().astype(int) + shift)  # exactly the pixels
    assert x.dtype == np.dtype(dtype)


def test_quantization_wins_over_metadata_normalization():
    t = choose_transform(_spec("uint8", 1 / 128, 128), {"mean": [0.0], "std": [255.0], "source": "md"})
    assert t.raw and "quantization" in t.source


def test_calibrated_range_near_a_convention_is_quantized_not_raw():
    """uint8 scale 0.00384, zero point 0: the range 0..0.979 is the 0..1 convention, but the integer grid
    does not map one to one onto the pixels: q = round(p / 255 / 0.00384)."""
    spec = _spec("uint8", 0.00384, 0)
    t = choose_transform(spec)
    assert (t.label, t.raw) == ("0,1", False)
    x = to_input(_canvas(), spec)
    assert x[0, 1, 0, 0] == round(128 / 255 / 0.00384) == 131
    assert x[0, 1, 2, 0] == 255  # 255 / 255 / 0.00384 = 260 -> clipped
    assert x[0, 0, 1, 0] == round(1 / 255 / 0.00384) == 1


def test_unrecognised_quantized_range_uses_metadata_then_assumes_0_1():
    spec = _spec("uint8", 0.0186, 114)  # -2.12 .. 2.62: mean/std-normalised data
    t = choose_transform(spec)
    assert t.label == "0,1" and "matches no convention" in t.source
    md = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "source": "TFLite metadata"}
    t = choose_transform(spec, md)
    assert t.label == "mean/std" and "TFLite metadata" in t.source
    x = to_input(_canvas(), spec, t)
    assert x[0, 0, 0, 2] == round((200 - 103.53) / 57.375 / 0.0186) + 114  # channel 2 of pixel (0, 0)


def test_float_input_default_is_pixel_over_255_exactly_as_before():
    x = to_input(_canvas(), _spec("float32"))
    np.testing.assert_array_equal(x[0], _canvas().astype(np.float32) * np.float32(1 / 255))


def test_float_input_metadata_mean_std_per_channel():
    md = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "source": "TFLite metadata"}
    spec = _spec("float32", layout="NCHW")
    t = choose_transform(spec, md)
    x = to_input(_canvas(), spec, t)
    for c, (m, s) in enumerate(zip(md["mean"], md["std"], strict=True)):
        np.testing.assert_allclose(x[0, c], (_canvas()[..., c] - m) / s, rtol=1e-6, atol=1e-6)


def test_metadata_127_5_is_recognised_as_minus1_1():
    t = choose_transform(_spec("float32"), {"mean": [127.5], "std": [127.5], "source": "md"})
    assert t.label == "-1,1"
    x = to_input(_canvas(), _spec("float32"), t)
    assert x[0, 1, 2, 0] == pytest.approx(1.0) and x[0, 0, 0, 0] == pytest.approx(-1.0)


@pytest.mark.parametrize("rng,lo,hi", [("0,1", 0, 1), ("-1,1", -1, 1), ("0,255", 0, 255)])
def test_override_wins_for_float(rng, lo, hi):
    t = choose_transform(_spec("float32"), {"mean": [0.0], "std": [1.0], "source": "md"}, rng)
    assert t.label == rng and t.source == "--input-range"
    x = to_input(_canvas(), _spec("float32"), t)
    np.testing.assert_allclose(x[0, 1, 2, 0], hi, rtol=1e-6)
    np.testing.assert_allclose(x[0, 0, 0, 0], lo, atol=1e-6)


def test_override_against_an_exact_convention_is_quantized():
    """uint8 1/255 & 0 would take raw pixels; `--input-range -1,1` asks for -1..1, quantized with the
    model's own parameters (clipped at 0 where the model cannot represent negative values)."""
    spec = _spec("uint8", 1 / 255, 0)
    t = choose_transform(spec, None, "-1,1")
    assert not t.raw and t.source == "--input-range"
    x = to_input(_canvas(), spec, t)
    assert x[0, 1, 2, 0] == 255 and x[0, 0, 0, 0] == 0


def test_integer_input_without_quantization_takes_raw_pixels():
    assert to_input(_canvas(), _spec("uint8"))[0].tolist() == _canvas().tolist()
    np.testing.assert_array_equal(to_input(_canvas(), _spec("int8"))[0].astype(int), _canvas().astype(int) - 128)


def test_input_maker_fills_its_own_contiguous_buffer():
    spec = _spec("float32", layout="NCHW")
    mk = InputMaker(spec, choose_transform(spec))
    a = mk(_canvas())
    assert a.flags.c_contiguous and a.shape == (1, 3, 2, 3)
    assert mk(_canvas()) is a  # the same buffer, overwritten


# ------------------------------------------------------------------------------------------ end to end
GREY = (90, 120, 150)  # uniform image; mean pixel 120
BASE_SCORE, GAIN = 0.5, 0.1


def _yolo_const() -> np.ndarray:
    """[1, 4 + 3, 84]: one detection (anchor 10, class 0, score 0.5, box 12..28 px); every other score -100,
    so adding GAIN * mean (|.| <= 0.26) never lifts them over the confidence threshold."""
    grid = anchor_grid((64, 64))
    c = np.zeros((7, len(grid)), np.float32)
    c[0], c[1] = grid[:, 0], grid[:, 1]
    c[2] = c[3] = 8.0
    c[4:] = -100.0
    c[:4, 10] = (20.0, 20.0, 16.0, 16.0)
    c[4, 10] = BASE_SCORE
    return c[None]


def _model(path: Path, dtype="float32", quant=None, metadata_from=None) -> Path:
    return tflite_model(path, [1, 64, 64, 3], dtype, quant, outputs={"output0": (_yolo_const(), "float32", None)},
                        gain=GAIN, metadata_from=metadata_from)


@pytest.fixture(scope="module")
def grey_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grey")
    (root / "images").mkdir()
    images, anns = [], []
    for i in (1, 2):
        Image.new("RGB", (64, 64), GREY).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [12, 12, 16, 16], "area": 256, "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def _scores(tmp_path: Path, data: Path, models: list[Path], *extra: str) -> tuple[dict, dict]:
    out = tmp_path / "out"
    args = []
    for m in models:
        args += ["--model", str(m)]
    assert main([*args, "--data", str(data), "--out", str(out), "--no-cache", "--quiet", *extra]) == 0
    s = json.loads((out / "summary.json").read_text())
    scores = {}
    for m in s["models"]:
        preds = json.loads((out / m["predictions"]).read_text())
        assert len(preds) == 2 and len({p["score"] for p in preds}) == 1  # one detection per image
        scores[m["name"]] = preds[0]["score"]
    return scores, {m["name"]: m["input_transform"] for m in s["models"]}


def _expected(mean_real: float) -> float:
    return round(BASE_SCORE + GAIN * mean_real, 5)


M1P1_TWIN = (120 - 127.5) / 127.5  # the float twin with NormalizationOptions 127.5 / 127.5


@pytest.mark.parametrize("dtype,quant,mean_real,label", [
    ("uint8", (1 / 128, 128), (120 - 128) / 128, "-1,1"),  # raw pixels, read by the model as (q - 128) / 128
    ("int8", (1 / 128, 0), (120 - 128) / 128, "-1,1"),  # raw pixels - 128
])
def test_minus1_1_quantized_models_match_their_float_twin(tmp_path, grey_data, dtype, quant, mean_real, label):
    q = _model(tmp_path / f"q_{dtype}.tflite", dtype, quant)
    twin = _model(tmp_path / "twin.tflite", metadata_from=M1P1_META)
    scores, transforms = _scores(tmp_path, grey_data, [twin, q])
    assert scores[f"q_{dtype}"] == _expected(mean_real)
    assert scores["twin"] == _expected(M1P1_TWIN)
    assert abs(scores[f"q_{dtype}"] - scores["twin"]) < 0.001  # the same detection (input rounding aside)
    assert transforms[f"q_{dtype}"]["range"] == label and transforms[f"q_{dtype}"]["raw_pixels"]
    assert "NormalizationOptions" in transforms["twin"]["source"] and transforms["twin"]["range"] == "-1,1"


@pytest.mark.parametrize("dtype,quant", [("uint8", (1 / 255, 0)), ("int8", (1 / 255, -128))])
def test_0_1_quantized_models_match_their_float_twin(tmp_path, grey_data, dtype, quant):
    q = _model(tmp_path / f"q_{dtype}.tflite", dtype, quant)
    twin = _model(tmp_path / "twin.tflite")
    scores, transforms = _scores(tmp_path, grey_data, [twin, q])
    assert scores["twin"] == _expected(120 / 255)
    assert scores[f"q_{dtype}"] == scores["twin"]  # raw pixels read as p / 255: the very same values
    assert transforms[f"q_{dtype}"]["raw_pixels"] and transforms["twin"]["range"] == "0,1"


def test_input_range_override_makes_a_plain_float_model_the_twin(tmp_path, grey_data):
    plain = _model(tmp_path / "plain.tflite")
    scores, transforms = _scores(tmp_path, grey_data, [plain], "--input-range", "-1,1")
    assert scores["plain"] == _expected((120 / 255) * 2 - 1)
    assert transforms["plain"]["source"] == "--input-range"


def test_imagenet_mean_std_metadata(tmp_path, grey_data):
    m = _model(tmp_path / "imnet.tflite", metadata_from=IMAGENET_META)
    scores, transforms = _scores(tmp_path, grey_data, [m])
    mean = np.float32([123.675, 116.28, 103.53])  # as stored (float32) by tflite-support
    std = np.float32([58.395, 57.12, 57.375])
    expected = float(np.mean((np.float64(GREY) - mean) / std))
    assert scores["imnet"] == pytest.approx(_expected(expected), abs=2e-5)
    assert transforms["imnet"]["range"] == "mean/std"
