"""Calibration: images streamed one at a time through the float model, per-tensor statistics in two passes.

* **Images.** :func:`calibration_images` lists a folder of images (sorted by name) or a COCO dataset (its
  images in id order). :class:`SampleSource` is a callable returning a *fresh iterator* over that list:
  each image is decoded, letterboxed and turned into the model's input by the validator's own code
  (``validator.data.preprocess``: ``letterbox``, ``choose_transform``, ``InputMaker``), so the model is
  calibrated on exactly the values ``validate`` will feed it. ``InputMaker`` fills one preallocated
  buffer, so one preprocessed image is in memory at a time, whatever the sample count.
* **Taps** run the float model and hand out its activation tensors: :class:`TFLiteTap` (the LiteRT
  interpreter with ``experimental_preserve_all_tensors``: every float tensor without constant data, named
  as ai-edge-quantizer names them) and :class:`OnnxTap` (onnxruntime on a copy of the graph whose float
  intermediate tensors are all graph outputs).
* **Two passes** (:func:`collect`): pass 1 takes each tensor's exact minimum and maximum; pass 2 fills a
  histogram of ``bins`` equal bins over ``[-amax, amax]`` (``amax`` from pass 1), the fixed range that makes
  histograms of different images add up exactly. Sample counts asked for together (``--samples 200,500``)
  share both passes: the first 200 images of the 500 are the 200-sample calibration, each count with its
  own extremes and histogram range, so the statistics of a count depend on its own images only.
* **Saved** (:class:`StatsCache`): one compressed ``.npz`` per (model sha256, settings, sample count,
  calibration-list hash), so another strategy, granularity or emitter reuses it without inference.

Peak memory is one image, the float model's tensors for that image and the statistics (a few MB): flat in
the sample count (``benchmarks/quantize.py`` measures it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quantizer.common import cache_dir, quiet_stderr, sha256_file
from quantizer.strategies import DEFAULT_BINS, TensorStats
from validator.data.preprocess import InputMaker, Resample, ResizeMode, letterbox, load_image
from validator.errors import InputError
from validator.tensors import InputSpec, InputTransform

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
STATS_VERSION = 1


# ------------------------------------------------------------------------------------------ images
@dataclass(frozen=True)
class ImageList:
    """Calibration images in stream order; ``names`` are what manifests record (COCO ``file_name`` or the
    path relative to the folder)."""

    source: Path
    paths: tuple[Path, ...]
    names: tuple[str, ...]
    digests: list[str] = field(default_factory=list, compare=False, repr=False)  # file sha256s, filled on demand

    def __len__(self) -> int:
        return len(self.paths)

    def sha256(self, count: int) -> str:
        """Hash of the first ``count`` images: names and bytes, in order."""
        while len(self.digests) < min(count, len(self.paths)):
            self.digests.append(sha256_file(self.paths[len(self.digests)]))
        h = hashlib.sha256()
        for name, d in zip(self.names[:count], self.digests[:count], strict=True):
            h.update(f"{name}\0{d}\n".encode())
        return h.hexdigest()


def calibration_images(path: Path) -> ImageList:
    """A COCO annotation JSON, a dataset folder holding one, or a folder of images (sorted by name; its
    ``images/`` subfolder when it has no images itself)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: calibration data not found")
    coco_folder = (path / "annotations.json").is_file() or \
        ((path / "annotations").is_dir() and any((path / "annotations").glob("instances_*.json")))
    if path.is_file() or coco_folder:
        from validator.data.coco import load_dataset

        if path.is_file() and path.suffix.lower() != ".json":
            raise InputError(f"{path}: --calib takes a folder of images or a COCO annotation JSON")
        ds = load_dataset(path, missing_hint="give --calib a folder of the images you have, or a JSON that lists "
                                             "only those")
        return ImageList(path, tuple(r.path for r in ds.images), tuple(r.file_name for r in ds.images))
    folder = path
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files and (path / "images").is_dir():
        folder = path / "images"
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path}: no calibration images (looked for {', '.join(IMAGE_SUFFIXES)} files and a "
                         "COCO annotation JSON)")
    return ImageList(path, tuple(files), tuple(str(p.relative_to(folder)) for p in files))


class SampleSource:
    """``source(start, stop)`` -> a fresh iterator over ``(name, input tensor)`` for images start..stop-1.

    The tensor is the maker's own buffer, overwritten by the next item: whoever wants to keep one must
    copy it (the statistics never do)."""

    def __init__(self, images: ImageList, spec: InputSpec, transform: InputTransform,
                 resize: str = "letterbox", resample: str = "antialias"):
        self.images, self.spec, self.transform = images, spec, transform
        self.resize, self.resample = ResizeMode(resize), Resample(resample)

    def settings(self) -> dict:
        return {"input": self.spec.describe(), "transform": self.transform.describe(),
                "resize": self.resize.value, "resample": self.resample.value}

    def __call__(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        maker = InputMaker(self.spec, self.transform)
        stop = len(self.images) if stop is None else min(stop, len(self.images))
        for i in range(start, stop):
            canvas, _ = letterbox(load_image(self.images.paths[i]), self.spec.hw, self.resize, self.resample)
            yield self.images.names[i], maker(canvas)


# ------------------------------------------------------------------------------------------ taps
class TFLiteTap:
    """The float TFLite model with every intermediate tensor kept; yields (name, array) per float
    activation tensor (no constant data), named as the interpreter and ai-edge-quantizer name them."""

    kind = "tflite"

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        with quiet_stderr():
            self.interp = Interpreter(model_path=str(path), num_threads=threads or None,
                                      experimental_preserve_all_tensors=True)
            self.interp.allocate_tensors()
        wanted = set(float_activation_names(self.path.read_bytes()))
        details = [d for d in self.interp.get_tensor_details() if d["name"] in wanted]
        self.names = [d["name"] for d in details]
        self._index = [d["index"] for d in details]
        self._input = self.interp.get_input_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        self.interp.set_tensor(self._input, x)
        self.interp.invoke()
        for name, idx in zip(self.names, self._index, strict=True):
            yield name, self.interp.get_tensor(idx)


def float_activation_names(model_bytes: bytes) -> list[str]:
    """Names of subgraph 0's float32 tensors that hold no constant data (activations and the input)."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(model_bytes, 0)
    sg = m.Subgraphs(0)
    out = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Type() != s.TensorType.FLOAT32:
            continue
        b = m.Buffers(t.Buffer()) if t.Buffer() < m.BuffersLength() else None
        if b is not None and (b.DataLength() > 0 or b.Offset() > 1):
            continue
        out.append(t.Name().decode())
    return out


class OnnxTap:
    """onnxruntime on a copy of the graph exposing every float tensor a node makes (and the input)."""

    kind = "onnx"

    def __init__(self, model, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
        self.names = onnx_activation_names(model)
        aug = onnx.ModelProto()
        aug.CopyFrom(model)
        have = {o.name for o in aug.graph.output}
        for name in self.names:
            if name not in have:
                aug.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(aug.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._input = model.graph.input[0].name

    def __call__(self, x: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        yield from zip(self.names, self.session.run(self.names, {self._input: x}), strict=True)


def onnx_activation_names(model) -> list[str]:
    """The graph input and every float32 tensor a node produces (types from ONNX shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    inits = {i.name for i in g.initializer}
    names = [i.name for i in g.input if i.name not in inits]
    seen = set(names)
    for node in g.node:
        for o in node.output:
            if o and o not in seen and o not in inits and types.get(o) == onnx.TensorProto.FLOAT:
                names.append(o)
                seen.add(o)
    return names


# ------------------------------------------------------------------------------------------ statistics
@dataclass
class Statistics:
    """Per-tensor statistics of the first ``samples`` images of a calibration list."""

    names: list[str]
    mins: np.ndarray  # (T,) float64
    maxs: np.ndarray  # (T,) float64
    hist: np.ndarray  # (T, bins) int64 over [-amax_t, amax_t]
    samples: int
    meta: dict  # model sha256, settings, list hash, image names

    def tensors(self) -> dict[str, TensorStats]:
        return {n: TensorStats(float(self.mins[i]), float(self.maxs[i]), self.hist[i])
                for i, n in enumerate(self.names)}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, names=np.array(self.names), mins=self.mins, maxs=self.maxs, hist=self.hist,
                                meta=np.array(json.dumps(self.meta, sort_keys=True)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Statistics:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls([str(n) for n in z["names"]], z["mins"], z["maxs"], z["hist"], int(meta["samples"]), meta)


def _accumulate(row: np.ndarray, a: np.ndarray, amax: float) -> None:
    """Add the values of ``a`` to ``row`` (bins equal over [-amax, amax]; outside values in the end bins)."""
    bins = row.size
    if amax <= 0:
        row[bins // 2] += a.size
        return
    t = a.reshape(-1).astype(np.float32) + np.float32(amax)
    t *= np.float32(bins / (2.0 * amax))
    idx = t.astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    row += np.bincount(idx, minlength=bins)


def collect(tap, source: Callable[..., Iterator[tuple[str, np.ndarray]]], counts: Sequence[int], *,
            bins: int = DEFAULT_BINS, progress: Callable[[str, int], object] | None = None) -> dict[int, Statistics]:
    """Two passes over the first ``max(counts)`` images of ``source``; statistics for every count.

    ``progress(desc, total)`` returns a context manager with ``update()`` (``validator.progress.Progress``).
    """
    counts = sorted(set(int(c) for c in counts))
    n = counts[-1]
    names = list(tap.names)
    t_count = len(names)
    mins = np.full(t_count, np.inf)
    maxs = np.full(t_count, -np.inf)
    snaps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    seen = 0
    with _progress(progress, "calibrate, pass 1/2 (min/max)", n) as bar:
        for _, x in source(0, n):
            for i, (name, a) in enumerate(tap(x)):
                lo, hi = float(a.min()), float(a.max())
                if not (np.isfinite(lo) and np.isfinite(hi)):
                    raise ValueError(f"tensor {name} holds NaN or inf on calibration image {seen + 1}")
                if lo < mins[i]:
                    mins[i] = lo
                if hi > maxs[i]:
                    maxs[i] = hi
            seen += 1
            if seen in counts:
                snaps[seen] = (mins.copy(), maxs.copy())
            bar.update()
    if seen < n:
        raise ValueError(f"the sample source gave {seen} images, {n} asked for")
    amax = {c: np.maximum(np.abs(snaps[c][0]), np.abs(snaps[c][1])) for c in counts}
    hists = {c: np.zeros((t_count, bins), np.int64) for c in counts}
    with _progress(progress, "calibrate, pass 2/2 (histograms)", n) as bar:
        for k, (_, x) in enumerate(source(0, n)):
            live = [c for c in counts if k < c]
            for i, (_, a) in enumerate(tap(x)):
                for c in live:
                    _accumulate(hists[c][i], a, float(amax[c][i]))
            bar.update()
    return {c: Statistics(names, snaps[c][0], snaps[c][1], hists[c], c, {}) for c in counts}


# ------------------------------------------------------------------------------------------ by shard
def shard_bounds(counts: Sequence[int], shard: int) -> list[tuple[int, int]]:
    """Contiguous shards of the first ``max(counts)`` images, cut at every count (so each count's statistics
    are a sum over whole shards) and at most ``shard`` images long."""
    counts = sorted(set(int(c) for c in counts))
    cuts = sorted(set(counts) | set(range(0, counts[-1], max(1, shard))) | {0})
    return [(a, b) for a, b in zip(cuts, cuts[1:] + [counts[-1]], strict=True) if b > a]


def pass1(tap, source, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor min and max over images start..stop-1 (pass 1 of :func:`collect`, on one shard)."""
    t = len(tap.names)
    mins, maxs = np.full(t, np.inf), np.full(t, -np.inf)
    for k, (_, x) in enumerate(source(start, stop)):
        for i, (name, a) in enumerate(tap(x)):
            lo, hi = float(a.min()), float(a.max())
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(f"tensor {name} holds NaN or inf on calibration image {start + k + 1}")
            mins[i] = min(mins[i], lo)
            maxs[i] = max(maxs[i], hi)
    return mins, maxs


def pass2(tap, source, start: int, stop: int, amax: dict[int, np.ndarray], bins: int) -> dict[int, np.ndarray]:
    """Histograms over images start..stop-1 for every count the shard lies in (pass 2, one shard)."""
    live = [c for c in amax if start < c]
    hists = {c: np.zeros((len(tap.names), bins), np.int64) for c in live}
    for _, x in source(start, stop):
        for i, (_, a) in enumerate(tap(x)):
            for c in live:
                _accumulate(hists[c][i], a, float(amax[c][i]))
    return hists


def collect_sharded(names: list[str], counts: Sequence[int], shards: list[tuple[int, int]], run_pass1, run_pass2, *,
                    bins: int = DEFAULT_BINS) -> dict[int, Statistics]:
    """:func:`collect` with each pass run by shard (``run_pass1(shards) -> [(mins, maxs)]``,
    ``run_pass2(shards, amax) -> [{count: hist}]``, in shard order; e.g. on Ray workers). Exactly equal to
    :func:`collect`: extremes are merged with min/max, and the histograms, all over the same global range of
    each count, are integer counts summed."""
    counts = sorted(set(int(c) for c in counts))
    t = len(names)
    ext = run_pass1(shards)
    snaps = {}
    for c in counts:
        parts = [e for (_, b), e in zip(shards, ext, strict=True) if b <= c]
        snaps[c] = (np.min([p[0] for p in parts], axis=0) if parts else np.full(t, np.inf),
                    np.max([p[1] for p in parts], axis=0) if parts else np.full(t, -np.inf))
    amax = {c: np.maximum(np.abs(snaps[c][0]), np.abs(snaps[c][1])) for c in counts}
    hists = {c: np.zeros((t, bins), np.int64) for c in counts}
    for (_, b), h in zip(shards, run_pass2(shards, amax), strict=True):
        for c, v in h.items():
            if b <= c:
                hists[c] += v
    return {c: Statistics(names, snaps[c][0], snaps[c][1], hists[c], c, {}) for c in counts}


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, n: int = 1) -> None:
        pass


def _progress(factory, desc: str, total: int):
    return factory(desc, total) if factory else _Null()


# ------------------------------------------------------------------------------------------ cache
def default_stats_dir() -> Path:
    return cache_dir("calibration")


class StatsCache:
    """Statistics on disk, one ``.npz`` per (model, settings, sample count, calibration-list hash)."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root else None

    @staticmethod
    def key(model_sha256: str, settings: dict) -> str:
        blob = json.dumps({"v": STATS_VERSION, "model": model_sha256, **settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, key: str, count: int, list_sha256: str) -> Path | None:
        return self.root / f"{key}-n{count}-{list_sha256[:16]}.npz" if self.root else None

    def get(self, key: str, count: int, list_sha256: str) -> Statistics | None:
        p = self.path(key, count, list_sha256)
        if p is None or not p.is_file():
            return None
        try:
            st = Statistics.load(p)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None  # unreadable: computed again and overwritten
        if st.meta.get("key") != key or st.meta.get("list_sha256") != list_sha256 or st.samples != count:
            return None
        return st

    def put(self, st: Statistics) -> None:
        p = self.path(st.meta["key"], st.samples, st.meta["list_sha256"])
        if p is not None:
            try:
                st.save(p)
            except OSError:
                pass  # a read-only cache costs a re-run next time, never this run


def statistics(tap, source: SampleSource, counts: Sequence[int], *, model_sha256: str, cache: StatsCache,
               bins: int = DEFAULT_BINS, progress=None, collector=None) -> tuple[dict[int, Statistics], list[int]]:
    """Statistics for every count, from the cache where it has them; returns (stats, counts computed now)."""
    settings = {"tap": tap.kind, "bins": bins, "tensors": hashlib.sha256("\n".join(tap.names).encode()).hexdigest(),
                **source.settings()}
    key = StatsCache.key(model_sha256, settings)
    out: dict[int, Statistics] = {}
    missing = []
    hashes = {c: source.images.sha256(c) for c in counts}
    for c in counts:
        st = cache.get(key, c, hashes[c])
        if st is not None:
            out[c] = st
        else:
            missing.append(c)
    if missing:
        made = collector(missing) if collector else collect(tap, source, missing, bins=bins, progress=progress)
        for c, st in made.items():
            st.meta = {"key": key, "model_sha256": model_sha256, "settings": settings, "samples": c,
                       "list_sha256": hashes[c], "images": list(source.images.names[:c])}
            cache.put(st)
            out[c] = st
    return out, missing
