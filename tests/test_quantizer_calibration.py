"""quantizer.calibration: streamed sample sources (one image in memory at a time), taps, two-pass
statistics equal to a direct computation, prefixes, the statistics cache, image lists."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

from quantizer.calibration import (
    ImageList,
    OnnxTap,
    SampleSource,
    StatsCache,
    TFLiteTap,
    _accumulate,
    calibration_images,
    collect,
    statistics,
)
from tests.conftest import MODELS
from validator.data.preprocess import choose_transform, letterbox, load_image
from validator.errors import InputError
from validator.tensors import InputSpec


class ArrayTap:
    """A tap over a fake model: its 'tensors' are simple functions of the input."""

    kind = "fake"
    names = ["x", "neg", "zero"]

    def __call__(self, x):
        yield "x", x
        yield "neg", -2.0 * x
        yield "zero", np.zeros(3, np.float32)


class OneAtATime:
    """A sample source that fails when a new sample is requested while more than the previous one is still
    alive (a consumer's loop variable holds the previous one until the next arrives), and has no len(): any
    consumer that materialises the iterator (list(), len(), keeping references) fails."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed
        self.refs: list[weakref.ref] = []

    def __call__(self, start: int = 0, stop: int | None = None):
        rng = np.random.default_rng(self.seed)
        data = [rng.normal(0, 1 + k % 3, (4, 5)).astype(np.float32) for k in range(self.n)]
        for k in range(start, self.n if stop is None else min(stop, self.n)):
            gc.collect()
            alive = sum(r() is not None for r in self.refs)
            if alive > 1:
                raise AssertionError(f"sample {k} requested while {alive} earlier sample(s) are alive")
            x = Sample(data[k])
            self.refs.append(weakref.ref(x))
            yield f"img{k}", x
            del x


class Sample(np.ndarray):
    def __new__(cls, a):
        return np.asarray(a).view(cls)


def test_statistics_hold_one_sample_at_a_time():
    src = OneAtATime(12)
    stats = collect(ArrayTap(), src, [5, 12], bins=256)
    assert set(stats) == {5, 12}


def test_the_one_at_a_time_source_catches_materialising():
    src = OneAtATime(4)
    with pytest.raises(AssertionError, match="alive"):
        list(src())


def test_two_pass_statistics_equal_direct_computation():
    src = OneAtATime(12)
    stats = collect(ArrayTap(), src, [5, 12], bins=256)
    rng = np.random.default_rng(0)
    data = [rng.normal(0, 1 + k % 3, (4, 5)).astype(np.float32) for k in range(12)]
    for n in (5, 12):
        st = stats[n]
        assert st.samples == n
        x = np.concatenate([d.ravel() for d in data[:n]])
        tensors = st.tensors()
        assert tensors["x"].min == pytest.approx(float(x.min())) and tensors["x"].max == pytest.approx(float(x.max()))
        assert tensors["neg"].min == pytest.approx(float((-2 * x).min()))
        # the histogram of a prefix is over that prefix's own range: as np.histogram of its values
        a = tensors["x"].amax
        want, _ = np.histogram(x, 256, range=(-a, a))
        assert tensors["x"].hist.sum() == x.size
        assert np.abs(tensors["x"].hist - want).sum() <= 2  # float32 binning may move an edge value
        assert tensors["zero"].amax == 0 and tensors["zero"].hist.sum() == 3 * n


def test_a_prefix_count_equals_a_run_of_that_count_alone():
    both = collect(ArrayTap(), OneAtATime(12), [5, 12], bins=256)
    alone = collect(ArrayTap(), OneAtATime(12), [5], bins=256)
    np.testing.assert_array_equal(both[5].hist, alone[5].hist)
    np.testing.assert_array_equal(both[5].mins, alone[5].mins)


def test_accumulate_clips_outside_values_into_the_end_bins():
    row = np.zeros(8, np.int64)
    _accumulate(row, np.array([-5.0, -1.0, -0.01, 0.01, 0.99, 1.0, 7.0], np.float32), 1.0)
    assert row.tolist() == [2, 0, 0, 1, 1, 0, 0, 3]  # -5, -1 | -0.01 | 0.01 | 0.99, 1.0 (the top edge), 7


def test_nan_in_a_tensor_is_an_error():
    class NanTap(ArrayTap):
        def __call__(self, x):
            yield "x", np.array([np.nan], np.float32)

    with pytest.raises(ValueError, match="NaN"):
        collect(NanTap(), OneAtATime(2), [2], bins=256)


# ------------------------------------------------------------------------------------------ images
def test_calibration_images_from_a_folder_and_a_coco_dataset(shapes_small, tmp_path):
    coco = calibration_images(shapes_small)
    assert len(coco) == 40 and coco.names[0] == coco.paths[0].name
    same = calibration_images(shapes_small / "annotations.json")
    assert same.names == coco.names
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in coco.paths[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    il = calibration_images(folder)
    assert il.names == coco.names[:3]  # sorted by name; the shapes COCO ids follow the names
    assert il.sha256(3) == coco.sha256(3)  # names and bytes, wherever the files lie
    assert il.sha256(2) != il.sha256(3)


@pytest.mark.parametrize("what", ["missing", "empty", "not_json"])
def test_calibration_images_errors(tmp_path, what):
    p = {"missing": tmp_path / "nope", "empty": tmp_path, "not_json": tmp_path / "a.txt"}[what]
    if what == "not_json":
        p.write_text("x")
    with pytest.raises(InputError, match=str(p.name)):
        calibration_images(p)


def test_sample_source_is_the_validators_preprocessing(shapes_small):
    images = calibration_images(shapes_small)
    spec = InputSpec("images", (1, 64, 64, 3), "float32", "NHWC", (64, 64))
    t = choose_transform(spec)
    src = SampleSource(images, spec, t)
    got = [(n, x.copy()) for n, x in src(0, 2)]
    assert [n for n, _ in got] == list(images.names[:2])
    canvas, _ = letterbox(load_image(images.paths[1]), (64, 64))
    np.testing.assert_allclose(got[1][1][0], canvas.astype(np.float32) / 255, rtol=1e-6)
    it1, it2 = src(0, 1), src(0, 1)
    assert next(it1)[0] == next(it2)[0]  # every call is a fresh iterator


# ------------------------------------------------------------------------------------------ taps and cache
def test_tflite_tap_reads_every_float_activation(shapes_small):
    tap = TFLiteTap(MODELS / "shapes-det.split.float32.tflite")
    assert "serving_default_images:0" in tap.names and len(tap.names) > 200
    x = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    seen = dict(tap(x))
    np.testing.assert_array_equal(seen["serving_default_images:0"], x)
    assert all(np.isfinite(a).all() for a in seen.values())


def test_onnx_tap_reads_intermediate_tensors():
    import onnx

    m = onnx.load(str(MODELS / "shapes-det.onnx"))
    tap = OnnxTap(m)
    assert tap.names[0] == "images" and "output0" in tap.names and len(tap.names) > 200
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    seen = dict(tap(x))
    import onnxruntime as ort

    ref = ort.InferenceSession(str(MODELS / "shapes-det.onnx")).run(None, {"images": x})[0]
    np.testing.assert_allclose(seen["output0"], ref, rtol=1e-5, atol=1e-4)


def test_statistics_are_cached_by_model_list_and_count(shapes_small, tmp_path):
    images = calibration_images(shapes_small)
    spec = InputSpec("images", (1, 32, 32, 3), "float32", "NHWC", (32, 32))
    src = SampleSource(images, spec, choose_transform(spec))

    class PixelTap(ArrayTap):
        kind = "pixels"
        names = ["x"]
        calls = 0

        def __call__(self, x):
            PixelTap.calls += 1
            yield "x", x

    cache = StatsCache(tmp_path / "stats")
    first, computed = statistics(PixelTap(), src, [3, 5], model_sha256="m1", cache=cache, bins=256)
    assert computed == [3, 5] and PixelTap.calls == 10  # two passes over 5 images
    again, computed = statistics(PixelTap(), src, [3, 5], model_sha256="m1", cache=cache, bins=256)
    assert computed == [] and PixelTap.calls == 10
    np.testing.assert_array_equal(again[5].hist, first[5].hist)
    meta = again[3].meta
    assert meta["images"] == list(images.names[:3]) and meta["list_sha256"] == images.sha256(3)
    _, computed = statistics(PixelTap(), src, [3, 4], model_sha256="m1", cache=cache, bins=256)
    assert computed == [4]  # only the new count runs
    _, computed = statistics(PixelTap(), src, [3], model_sha256="m2", cache=cache, bins=256)
    assert computed == [3]  # another model
    other = ImageList(images.source, images.paths[1:], images.names[1:])
    _, computed = statistics(PixelTap(), SampleSource(other, spec, src.transform), [3], model_sha256="m1",
                             cache=cache, bins=256)
    assert computed == [3]  # another image list
    for p in (tmp_path / "stats").glob("*.npz"):
        p.write_bytes(b"garbage")
    _, computed = statistics(PixelTap(), src, [3], model_sha256="m1", cache=cache, bins=256)
    assert computed == [3]  # an unreadable entry is computed again


def test_saved_statistics_round_trip(tmp_path):
    st = collect(ArrayTap(), OneAtATime(3), [3], bins=256)[3]
    st.meta = {"key": "k", "samples": 3, "list_sha256": "abc", "images": ["a", "b", "c"]}
    st.save(tmp_path / "s.npz")
    back = type(st).load(tmp_path / "s.npz")
    assert back.names == st.names and back.meta == json.loads(json.dumps(st.meta))
    np.testing.assert_array_equal(back.hist, st.hist)
    assert Path(tmp_path / "s.npz").stat().st_size < 20_000


@pytest.mark.parametrize("shard", [1, 3, 4, 100])
def test_statistics_by_shard_equal_one_pass_exactly(shard):
    """Pass 1 by shard merged with min/max, pass 2 by shard over the global range summed: the same arrays."""
    from quantizer.calibration import collect_sharded, pass1, pass2, shard_bounds

    counts = [5, 12]
    whole = collect(ArrayTap(), OneAtATime(12), counts, bins=256)
    shards = shard_bounds(counts, shard)
    assert shards[0][0] == 0 and shards[-1][1] == 12 and all(b > a for a, b in shards)
    assert all(not (a < 5 < b) for a, b in shards)  # cut at every count
    tap, src = ArrayTap(), OneAtATime(12)
    by = collect_sharded(tap.names, counts, shards, lambda sh: [pass1(tap, src, a, b) for a, b in sh],
                         lambda sh, amax: [pass2(tap, src, a, b, amax, 256) for a, b in sh], bins=256)
    for c in counts:
        np.testing.assert_array_equal(by[c].mins, whole[c].mins)
        np.testing.assert_array_equal(by[c].maxs, whole[c].maxs)
        np.testing.assert_array_equal(by[c].hist, whole[c].hist)
        assert by[c].names == whole[c].names and by[c].samples == c
