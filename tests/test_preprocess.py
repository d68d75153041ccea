"""Image decoding and model-input preparation, with every expected value worked out by hand.

A letterbox off by one pixel or an un-applied EXIF rotation shifts every box and costs mAP silently,
so the geometry is pinned here rather than trusted.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from validator.data.preprocess import PAD_VALUE, ResizeMode, letterbox, load_image, to_input
from validator.errors import InputError
from validator.runners.base import InputSpec

COLOR = (10, 200, 30)


def _uniform(h: int, w: int, color=COLOR) -> np.ndarray:
    return np.tile(np.array(color, np.uint8), (h, w, 1))


def test_pad_value_is_yolo_grey():
    assert PAD_VALUE == 114


def test_letterbox_wide_image():
    """100x50 (w x h) into 64x64: r = min(64/50, 64/100) = 0.64 -> 64x32 content, 16 rows of padding above."""
    canvas, lb = letterbox(_uniform(50, 100), (64, 64))
    assert canvas.shape == (64, 64, 3) and canvas.dtype == np.uint8
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == pytest.approx((0.64, 0.64, 0.0, 16.0))
    assert tuple(lb.input_hw) == (64, 64)
    assert (canvas[:16] == PAD_VALUE).all() and (canvas[48:] == PAD_VALUE).all()
    assert (canvas[16:48] == COLOR).all()  # a uniform image stays uniform under bilinear resizing


def test_letterbox_tall_image_odd_padding():
    """60x100 (w x h) into 64x64: r = 0.64 -> new w = round(38.4) = 38, left pad (64-38)//2 = 13, right 13."""
    canvas, lb = letterbox(_uniform(100, 60), (64, 64))
    assert lb.scale_x == pytest.approx(38 / 60) and lb.scale_y == pytest.approx(0.64)
    assert (lb.pad_x, lb.pad_y) == (13.0, 0.0)
    assert (canvas[:, :13] == PAD_VALUE).all() and (canvas[:, 51:] == PAD_VALUE).all()
    assert (canvas[:, 13:51] == COLOR).all()


def test_letterbox_upscale_into_non_square_canvas():
    """30x30 into h=64, w=48: r = min(64/30, 48/30) = 1.6 -> 48x48, top pad (64-48)//2 = 8."""
    canvas, lb = letterbox(_uniform(30, 30), (64, 48))
    assert canvas.shape == (64, 48, 3)
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == pytest.approx((1.6, 1.6, 0.0, 8.0))
    assert (canvas[:8] == PAD_VALUE).all() and (canvas[56:] == PAD_VALUE).all()
    assert (canvas[8:56] == COLOR).all()


def test_letterbox_same_size_is_identity():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    canvas, lb = letterbox(img, (64, 64))
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (1.0, 1.0, 0.0, 0.0)
    np.testing.assert_array_equal(canvas, img)


def test_letterbox_keeps_content_where_it_belongs():
    """Left half red, right half blue, 128x64 -> 64x32 at pad_y 16: the halves stay left and right."""
    img = np.zeros((64, 128, 3), np.uint8)
    img[:, :64] = (255, 0, 0)
    img[:, 64:] = (0, 0, 255)
    canvas, lb = letterbox(img, (64, 64))
    assert (lb.scale_x, lb.pad_y) == (0.5, 16.0)
    np.testing.assert_array_equal(canvas[16:48, :30], np.broadcast_to((255, 0, 0), (32, 30, 3)))
    np.testing.assert_array_equal(canvas[16:48, 34:], np.broadcast_to((0, 0, 255), (32, 30, 3)))


def test_stretch():
    """100x50 stretched to 64x64: scale_x 0.64, scale_y 1.28, no padding anywhere."""
    canvas, lb = letterbox(_uniform(50, 100), (64, 64), ResizeMode.STRETCH)
    assert canvas.shape == (64, 64, 3)
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == pytest.approx((0.64, 1.28, 0.0, 0.0))
    assert (canvas == COLOR).all()


def test_stretch_is_selectable_by_name():
    _, lb = letterbox(_uniform(50, 100), (64, 64), ResizeMode("stretch"))
    assert lb.pad_y == 0.0 and lb.scale_y == pytest.approx(1.28)


# --------------------------------------------------------------------------------------- load_image
def test_exif_rotated_jpeg(tmp_path):
    """Stored 40 wide x 20 tall, left half red; orientation 6 = rotate 90 degrees clockwise to display,
    so the decoded image is 20 wide x 40 tall with the red half on top."""
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    pil.save(p, quality=95, exif=exif)
    out = load_image(p)
    assert out.shape == (40, 20, 3) and out.dtype == np.uint8
    top, bottom = out[5:15, 5:15].astype(int), out[25:35, 5:15].astype(int)
    assert np.abs(top - (255, 0, 0)).max() < 20  # JPEG is lossy: colours within a small tolerance
    assert np.abs(bottom - (0, 0, 255)).max() < 20


def test_grayscale_png_to_rgb(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(np.full((5, 7), 77, np.uint8), mode="L").save(p)
    out = load_image(p)
    assert out.shape == (5, 7, 3)
    assert (out == 77).all()


def test_rgba_png_to_rgb(tmp_path):
    p = tmp_path / "a.png"
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[...] = (10, 20, 30, 128)
    Image.fromarray(rgba, mode="RGBA").save(p)
    out = load_image(p)
    assert out.shape == (4, 6, 3)
    assert (out == (10, 20, 30)).all()  # alpha dropped, colour kept


def test_palette_png_to_rgb(tmp_path):
    p = tmp_path / "p.png"
    im = Image.new("P", (6, 4))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    px = np.zeros((4, 6), np.uint8)
    px[:, 3:] = 1
    im.putdata(px.ravel().tolist())
    im.save(p)
    out = load_image(p)
    assert out.shape == (4, 6, 3)
    assert (out[:, :3] == (255, 0, 0)).all() and (out[:, 3:] == (0, 255, 0)).all()


def test_palette_png_with_transparency_to_rgb(tmp_path):
    p = tmp_path / "pt.png"
    im = Image.new("P", (2, 2))
    im.putpalette([9, 8, 7, 1, 2, 3] + [0] * (256 * 3 - 6))
    im.putdata([0, 1, 1, 0])
    im.info["transparency"] = 0
    im.save(p, transparency=0)
    out = load_image(p)
    assert out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == [1, 2, 3] and out[0, 0].tolist() == [9, 8, 7]


@pytest.mark.parametrize("content", [b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 10, b""])
def test_unreadable_image(tmp_path, content):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    p = tmp_path / "cut.png"
    p.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_image(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value)


# --------------------------------------------------------------------------------------- to_input
def _canvas() -> np.ndarray:
    """2x3 canvas whose channels differ (R=0..5, G=100+, B=200+) so layout mistakes show."""
    c = np.zeros((2, 3, 3), np.uint8)
    c[..., 0] = np.arange(6).reshape(2, 3)
    c[..., 1] = 100 + np.arange(6).reshape(2, 3)
    c[..., 2] = 200 + np.arange(6).reshape(2, 3)
    return c


def _spec(layout: str, dtype: str, scale: float = 0.0, zp: int = 0) -> InputSpec:
    shape = (1, 3, 2, 3) if layout == "NCHW" else (1, 2, 3, 3)
    return InputSpec("images", shape, dtype, layout, (2, 3), scale, zp)


def test_to_input_float_nchw():
    x = to_input(_canvas(), _spec("NCHW", "float32"))
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, 1], (100 + np.arange(6).reshape(2, 3)) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x[0, 2, 1, 2], 205 / 255.0, rtol=1e-6)


def test_to_input_float_nhwc():
    x = to_input(_canvas(), _spec("NHWC", "float32"))
    assert x.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(x[0, 1, 2], np.array([5, 105, 205]) / 255.0, rtol=1e-6)


def test_to_input_uint8_scale_1_255_is_raw_pixels():
    x = to_input(_canvas(), _spec("NHWC", "uint8", 1 / 255, 0))
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], _canvas())


def test_to_input_int8_zero_point_minus_128_is_pixel_minus_128():
    x = to_input(_canvas(), _spec("NCHW", "int8", 1 / 255, -128))
    assert x.dtype == np.int8 and x.shape == (1, 3, 2, 3)
    np.testing.assert_array_equal(x[0], _canvas().transpose(2, 0, 1).astype(int) - 128)


def test_to_input_other_scale_rounds_and_clips():
    """scale 1/128, zp 10 (uint8): q = round(p/255*128) + 10, clipped at 255: 205 -> 103+10 = 113."""
    x = to_input(_canvas(), _spec("NHWC", "uint8", 1 / 128, 10))
    assert x[0, 1, 2].tolist() == [round(5 / 255 * 128) + 10, round(105 / 255 * 128) + 10, 113]
    y = to_input(np.full((2, 3, 3), 255, np.uint8), _spec("NHWC", "int8", 1 / 255, 0))
    assert (y == 127).all()  # 255 + 0 clipped to int8's 127


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey of 30000/65535 is the 8-bit grey 30000 >> 8 = 117 (what OpenCV's imread gives)."""
    p = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 30000, np.uint16)).save(p)
    out = load_image(p)
    assert out.shape == (4, 4, 3)
    assert np.abs(out.astype(int) - 117).max() <= 1


# --------------------------------------------------------------------------------------- resample
@pytest.mark.parametrize("seed", range(4))
def test_linear_resample_equals_opencv_inter_linear(seed):
    """`--resample linear` must feed the model OpenCV's INTER_LINEAR pixels bit for bit (what Ultralytics
    and EdgeFirst's validator feed theirs): shrinking, enlarging, one axis each way, tiny sizes, 2x."""
    cv2 = pytest.importorskip("cv2")
    from validator.data.preprocess import resize_linear

    rng = np.random.default_rng(seed)
    sizes = [(216, 384, 144, 256), (512, 512, 256, 256), (100, 150, 171, 256), (3, 5, 7, 2), (640, 427, 256, 171)]
    sizes += [tuple(int(v) for v in rng.integers(2, 700, 4)) for _ in range(20)]
    for h, w, nh, nw in sizes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(resize_linear(img, nw, nh),
                                      cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR), err_msg=str((h, w)))


def test_resample_modes_differ_only_when_resizing():
    from validator.data.preprocess import Resample

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a, la = letterbox(img, (64, 64), ResizeMode.LETTERBOX, Resample.ANTIALIAS)
    b, lb_ = letterbox(img, (64, 64), ResizeMode.LETTERBOX, Resample.LINEAR)
    assert la == lb_ and np.array_equal(a, b)  # 64 wide at 64: no resize, same canvas
    a, _ = letterbox(img, (32, 32), ResizeMode.LETTERBOX, Resample.ANTIALIAS)
    b, _ = letterbox(img, (32, 32), ResizeMode.LETTERBOX, Resample.LINEAR)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype,scale,zp,norm,rng", [
    ("float32", 0, 0, None, None), ("float32", 0, 0, None, "-1,1"), ("float32", 0, 0, None, "0,255"),
    ("float32", 0, 0, {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "source": "md"}, None),
    ("float16", 0, 0, None, None), ("uint8", 1 / 128, 128, None, None), ("int8", 1 / 255, -128, None, None),
    ("uint8", 0.00384, 0, None, None), ("int8", 0.0186, 10, None, None), ("uint8", 0, 0, None, None),
    ("int8", 0, 0, None, None),
])
def test_input_maker_fast_paths_equal_the_lookup_table(layout, dtype, scale, zp, norm, rng):
    """Whatever path the maker takes (float arithmetic, raw copy, int8 xor, table), the values are exactly
    the transform's lookup table applied pixel by pixel."""
    from validator.data.preprocess import InputMaker, choose_transform

    canvas = np.random.default_rng(7).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    shape = (1, 3, 5, 7) if layout == "NCHW" else (1, 5, 7, 3)
    spec = InputSpec("x", shape, dtype, layout, (5, 7), scale, zp)
    t = choose_transform(spec, norm, rng)
    got = InputMaker(spec, t)(canvas)
    table = t.lut(spec)
    want = np.stack([table[c][canvas[:, :, c]] for c in range(3)], axis=0 if layout == "NCHW" else 2)[None]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
