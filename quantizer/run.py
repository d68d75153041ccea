"""Orchestration of ``quantize``: float parents -> statistics (once per parent) -> variants -> manifests.

For every layout and format the float *parent* is made once (ONNX: the layout rewrite, saved in the output
folder; TFLite: its onnx2tf conversion, found or made by ``convert``), its statistics collected once
(``calibration.statistics``: two streamed passes, cached), and then every strategy x sample count x
granularity x I/O variant is only arithmetic on those statistics plus an emitter call (a few seconds).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from quantizer import emit_onnx, emit_tflite
from quantizer import layout as layouts
from quantizer.calibration import (
    OnnxTap,
    SampleSource,
    StatsCache,
    TFLiteTap,
    calibration_images,
    default_stats_dir,
    statistics,
)
from quantizer.check import FloatReference, compare
from quantizer.common import peak_rss_mb, sha256_bytes, sha256_file
from quantizer.manifest import write_index, write_variant
from quantizer.strategies import DEFAULT_BINS, MIN_WIDTH, Strategy, ranges
from validator.data.preprocess import choose_transform
from validator.errors import InputError
from validator.progress import Progress
from validator.runners import open_runner

TOOLS = ("qharness", "ai-edge-quantizer", "ai-edge-litert", "onnxruntime", "onnx", "numpy")


@dataclass(frozen=True)
class Options:
    model: Path
    calib: Path
    out: Path
    samples: tuple[int, ...] = (200,)
    strategies: tuple[Strategy, ...] = (Strategy("minmax"),)
    granularities: tuple[str, ...] = ("channel",)
    ios: tuple[str, ...] = ("int8",)
    layouts: tuple[str, ...] | None = None  # None: split for ONNX, the model's own for TFLite
    formats: tuple[str, ...] = ("tflite",)
    recipe: str = "static_int8"
    check_images: int = 8
    bins: int = DEFAULT_BINS
    min_width: float = MIN_WIDTH
    resize: str = "letterbox"
    resample: str = "antialias"
    stats_dir: Path | None = None
    threads: int | None = None
    quiet: bool = False
    force: bool = False  # replace the variants an earlier run left in --out
    ray: str | None = None  # calibration statistics by shard on Ray (quantizer/distributed.py): its address
    ray_shard: int = 32  # calibration images per shard


SQNR_WARN_DB = 10.0  # an output below this kept less than 10x more signal than error: validate it before use


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``quantize``: ``variants.json`` lists the variants finished before it (``kept``)."""

    def __init__(self, kept: int, planned: int, out: Path):
        super().__init__()
        self.kept, self.planned, self.out = kept, planned, out

    def message(self) -> str:
        if not self.kept:
            return f"interrupted before any variant was finished; {self.out}/variants.json lists none"
        return (f"interrupted: kept the {self.kept} of {self.planned} variants finished in {self.out}/ "
                "(variants.json lists them; validate --manifest reads it)")


@dataclass
class Outcome:
    entries: list[dict]
    index: Path
    table: str


@dataclass
class Parent:
    """One float model every variant of a (layout, format) is made from."""

    layout: str
    format: str
    path: Path
    sha256: str
    onnx_model: object | None  # the rewritten ModelProto for ONNX parents
    metadata: dict | None  # what TFLite variants carry in their appended metadata.json
    converter: dict  # onnx2tf / tensorflow versions when converted now or found converted


def tool_versions(extra: dict | None = None) -> dict:
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out.update(extra or {})
    return out


def _value_range(transform) -> tuple[float, float]:
    lo = min(transform.offset)
    hi = max(255.0 * g + o for g, o in zip(transform.gain, transform.offset, strict=True))
    return float(min(lo, hi)), float(max(lo, hi))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _model_record(path: Path) -> dict | None:
    """The converter's record beside a float TFLite (made by ``quantizer.convert``) when it is this file's."""
    from quantizer.convert import RECORD_FORMAT

    try:
        doc = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
        return None
    return doc if doc.get("tflite_sha256") == sha256_file(path) else None


def _parents(opts: Options, kind: str, log) -> list[Parent]:
    """The float parents, one per (layout, format), in build order."""
    from quantizer import convert

    out: list[Parent] = []
    if kind == "tflite":
        data = opts.model.read_bytes()
        rec = _model_record(opts.model)
        lay = rec["layout"] if rec and rec.get("layout") in layouts.LAYOUTS else "given"
        if opts.layouts and opts.layouts != (lay,):
            raise InputError(f"{opts.model}: --outputs rewrites an ONNX graph; a TFLite model is used as it is "
                             f"(layout: {lay})")
        try:
            emit_tflite.signature(data)
        except ValueError as e:
            raise InputError(f"{opts.model}: {e}") from None
        return [Parent(lay, "tflite", opts.model, sha256_bytes(data), None, emit_tflite.read_metadata(data),
                       (rec or {}).get("converter", {}))]
    import onnx

    try:
        source = onnx.load(str(opts.model))
        layouts.find_head(layouts.prepare(source))
    except layouts.LayoutError as e:
        raise InputError(f"{opts.model}: {e}") from None
    for lay in opts.layouts or ("split",):
        rewritten = layouts.apply(source, lay)
        for fmt in opts.formats:
            if fmt == "onnx":
                p = opts.out / f"{opts.model.stem}.{lay}.float32.onnx"
                data = rewritten.SerializeToString()
                _write(p, data)
                out.append(Parent(lay, "onnx", p, sha256_bytes(data), rewritten, None, {}))
            else:
                made = convert.convert(opts.model, lay, log=log)
                out.append(Parent(lay, "tflite", made.path, made.record["tflite_sha256"], None,
                                  emit_tflite.read_metadata(made.path.read_bytes()), made.record.get("converter", {})))
    return out


def variant_name(stem: str, lay: str, strategy: Strategy, n: int | None, gran: str | None, io: str) -> str:
    parts = [stem] + ([lay] if lay != "given" else []) + [strategy.label]
    if n is not None:
        parts.append(f"n{n}")
    if gran is not None:
        parts.append(gran)
    parts.append(io)
    return ".".join(parts)


@dataclass
class _Builder:
    """Writes one parent's variants: model file, check against the parent, manifest, progress line."""

    opts: Options
    parent: Parent
    ref: FloatReference
    common: dict
    held_out: bool
    entries: list[dict]
    log: Callable[[str], None]
    warn: Callable[[str], None]
    on_added: Callable[[], None]

    def add(self, name: str, ext: str, data: bytes, entry: dict, t0: float) -> None:
        path = self.opts.out / f"{name}.{ext}"
        _write(path, data)
        rows = compare(path, self.ref, self.parent.layout)
        io_desc = emit_tflite.io_description(data) if ext == "tflite" else _onnx_io(data)
        full = {"name": name, "path": path.name, "sha256": sha256_bytes(data), "bytes": len(data),
                "model_format": ext, **entry, **self.common,
                "io": {"input": io_desc["inputs"][0], "outputs": io_desc["outputs"]},
                "wall_seconds": round(time.monotonic() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
                "check": {"images": self.ref.names, "held_out": self.held_out, "outputs": rows}}
        low = [r for r in rows if r["sqnr_db"] is not None and r["sqnr_db"] < SQNR_WARN_DB]
        if low:
            full["warnings"] = [f"output {r['name']} ({r['role']}): SQNR {r['sqnr_db']:.1f} dB < {SQNR_WARN_DB:g} dB "
                                "against the float parent" for r in low]
        write_variant(self.opts.out, full)
        self.entries.append(full)
        self.on_added()
        worst = min((r["sqnr_db"] for r in rows if r["sqnr_db"] is not None), default=None)
        self.log(f"quantize: [{len(self.entries)}] {path.name} ({full['wall_seconds']:.1f} s"
                 + (f", min SQNR {worst:.1f} dB" if worst is not None else "") + ")")
        for r in low:
            self.warn(f"quantize: warning: {name}: {r['role']} output '{r['name']}' SQNR {r['sqnr_db']:.1f} dB is "
                      f"below {SQNR_WARN_DB:g} dB: it kept little of the float model's signal (e.g. boxes and "
                      "scores sharing one int8 scale); validate it before use (docs/quantizer.md)")


def run(opts: Options, log: Callable[[str], None], warn: Callable[[str], None] | None = None) -> Outcome:
    """Build every variant (see the module docstring); InputError for bad input, before the long work.

    ``variants.json`` is rewritten after each variant (``complete`` false until the end), so a Ctrl-C leaves
    an index of the finished variants (:class:`Interrupted` says how many). ``warn`` gets what must be seen
    even with ``--quiet`` (an output whose SQNR is below ``SQNR_WARN_DB``)."""
    warn = warn or log
    t_run = time.monotonic()
    kind = opts.model.suffix.lower().lstrip(".")
    if kind not in ("onnx", "tflite"):
        raise InputError(f"{opts.model}: unsupported model type (expected a float .onnx or .tflite)")
    src = open_runner(opts.model)
    if src.precision.quantized:
        raise InputError(f"{opts.model}: quantize needs a float model; its tensors show {src.precision.label} "
                         f"({src.precision.evidence})")
    if kind == "tflite" and "onnx" in opts.formats:
        raise InputError(f"{opts.model}: --format onnx needs an ONNX model (a TFLite model makes TFLite variants)")
    images = calibration_images(opts.calib)
    calibrated = [s for s in opts.strategies if s.calibrated]
    references = [s for s in opts.strategies if not s.calibrated]
    n_max = max(opts.samples) if calibrated else 0
    if len(images) < n_max:
        raise InputError(f"{opts.calib}: {len(images)} calibration images; --samples asks for {n_max}")
    check_idx = list(range(n_max, min(len(images), n_max + opts.check_images)))
    held_out = bool(check_idx)
    if not check_idx:  # every image calibrates: check on the first ones, and say so in the manifests
        check_idx = list(range(min(len(images), opts.check_images)))
    check_list = [(images.names[i], images.paths[i]) for i in check_idx]
    try:
        recipe = emit_tflite.load_recipe(opts.recipe)
    except emit_tflite.RecipeError as e:
        raise InputError(str(e)) from None
    earlier = _earlier_variants(opts)
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
        probe = opts.out / f".quantize-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"{opts.out}: cannot write the output folder ({e.strerror or e})") from None
    float_model = {"path": str(opts.model.resolve()), "sha256": sha256_file(opts.model), "format": kind}
    rec = _model_record(opts.model) if kind == "tflite" else None
    stem = Path(rec["source"]).stem if rec and rec.get("source") else opts.model.stem
    cache = StatsCache(opts.stats_dir or default_stats_dir())
    entries: list[dict] = []
    planned = [0]
    calib_doc = {"source": str(opts.calib.resolve()), "images_available": len(images)}
    tool = {"name": "quantize", "qharness": tool_versions()["qharness"]}

    def write(complete: bool) -> Path:
        return write_index(opts.out, entries, float_model, calib_doc, tool, complete=complete, planned=planned[0])

    try:
        if earlier:
            shown = ", ".join(earlier[:4]) + (f", +{len(earlier) - 4} more" if len(earlier) > 4 else "")
            log(f"quantize: --force: replacing the {len(earlier)} variants of the earlier run in {opts.out} "
                f"({shown})")
            _remove_variants(opts.out, earlier)
        write(False)  # from here on variants.json lists exactly the variants that are finished
        parents = _parents(opts, kind, log)
        planned[0] = sum(_planned(opts, p, calibrated, references) for p in parents)
        _build(opts, parents, images, n_max, calibrated, references, check_list, held_out, recipe,
               float_model, stem, cache, entries, log, warn, lambda: write(False))
    except KeyboardInterrupt:
        write(False)
        raise Interrupted(len(entries), planned[0], opts.out) from None
    index = write(True)
    return Outcome(entries, index, summary_table(entries, time.monotonic() - t_run))


def transform_of(runner):
    return choose_transform(runner.input, runner.metadata.get("normalization"))


def _planned(opts: Options, parent: Parent, calibrated, references) -> int:
    per = len(opts.granularities) * (len(opts.ios) if parent.format == "tflite" else 1)
    n = len(calibrated) * len(opts.samples) * per
    if parent.format == "tflite":
        n += sum(1 if s.name == "fp16" else len(opts.granularities) for s in references)
    return n


def _earlier_variants(opts: Options) -> list[str]:
    """Variant files an earlier run left in ``--out`` (from its variants.json): refused unless ``--force``."""
    from quantizer.manifest import INDEX_NAME, load_index

    if opts.out.exists() and not opts.out.is_dir():
        raise InputError(f"{opts.out}: --out is an existing file, not a folder")
    index = opts.out / INDEX_NAME
    if not index.exists():
        return []
    doc = load_index(index)
    if doc is None:
        raise InputError(f"{index}: not a quantize variants.json; give another --out")
    names = [v["path"] for v in doc["variants"] if isinstance(v.get("path"), str) and "/" not in v["path"]
             and "\\" not in v["path"] and (opts.out / v["path"]).is_file()]
    if names and not opts.force:
        raise InputError(f"{opts.out}: holds {len(names)} variants of an earlier quantize run (variants.json); "
                         "give --force to replace them, or another --out")
    return names


def _remove_variants(out: Path, names: list[str]) -> None:
    for rel in names:
        for p in (out / rel, out / f"{rel}.json"):
            p.unlink(missing_ok=True)


def _build(opts, parents, images, n_max, calibrated, references, check_list, held_out, recipe,
           float_model, stem, cache, entries, log, warn, on_added) -> None:
    """Statistics once per parent, then every variant of it (appended to ``entries`` as each is finished)."""
    def progress(desc: str, total: int):
        return Progress(total, f"quantize: {desc}", "images", quiet=opts.quiet)

    for parent in parents:
        prunner = open_runner(parent.path)
        transform = transform_of(prunner)
        input_range = _value_range(transform)
        stats, computed, stats_s = {}, [], 0.0
        if calibrated:
            t0 = time.monotonic()
            log(f"quantize: statistics of {parent.path.name} ({parent.format}, {parent.layout}) on {n_max} images")
            source = SampleSource(images, prunner.input, transform, opts.resize, opts.resample)
            tap = TFLiteTap(parent.path, opts.threads) if parent.format == "tflite" else \
                OnnxTap(parent.onnx_model, opts.threads)
            collector = None
            if opts.ray:
                from quantizer.distributed import ray_collector

                collector = ray_collector(parent.path, parent.format, source, address=opts.ray, shard=opts.ray_shard,
                                          bins=opts.bins, threads=opts.threads)
            stats, computed = statistics(tap, source, opts.samples, model_sha256=parent.sha256, cache=cache,
                                         bins=opts.bins, progress=progress, collector=collector)
            del tap
            stats_s = time.monotonic() - t0
            cached = [n for n in opts.samples if n not in computed]
            log(f"quantize: statistics ready in {stats_s:.0f} s" + (f" (cached: {cached})" if cached else "")
                + f", peak RSS {peak_rss_mb():.0f} MB")
        common = {
            "layout": parent.layout,
            "float_model": {"path": float_model["path"], "sha256": float_model["sha256"]},
            "parent_model": {"path": str(parent.path.resolve()), "sha256": parent.sha256, "format": parent.format},
            "tools": tool_versions({k: v for k, v in parent.converter.items() if k in ("onnx2tf", "tensorflow")}),
        }
        builder = _Builder(opts, parent, FloatReference(parent.path, check_list, opts.resize, opts.resample),
                           common, held_out, entries, log, warn, on_added)
        parent_bytes = parent.path.read_bytes() if parent.format == "tflite" else b""
        for strategy in calibrated:
            for n in opts.samples:
                rng = ranges(strategy, stats[n].tensors(), opts.min_width)
                calib = {"source": str(opts.calib.resolve()), "count": n, "list_sha256": stats[n].meta["list_sha256"],
                         "images": list(stats[n].meta["images"]), "resize": opts.resize, "resample": opts.resample,
                         "input_transform": transform.describe(), "input_range": list(input_range),
                         "bins": opts.bins, "min_width": opts.min_width, "statistics_cached": n not in computed,
                         "statistics_seconds": round(stats_s, 1)}
                for gran in opts.granularities:
                    base = {"precision": "int8", "samples": n, "granularity": gran, "calibration": calib,
                            "strategy": {"name": strategy.name, "params": strategy.params, "spec": strategy.spec}}
                    if parent.format == "onnx":
                        t0 = time.monotonic()
                        data = _qdq(parent, rng, gran, input_range)
                        builder.add(variant_name(stem, parent.layout, strategy, n, gran, "qdq"), "onnx", data,
                                    {**base, "recipe": None}, t0)
                        continue
                    rules = emit_tflite.with_granularity(recipe, gran)
                    for io in opts.ios:
                        t0 = time.monotonic()
                        data = _tflite(parent_bytes, rng, rules, input_range, io, parent.metadata)
                        builder.add(variant_name(stem, parent.layout, strategy, n, gran, io), "tflite", data,
                                    {**base, "recipe": {"source": str(opts.recipe), "rules": rules}}, t0)
        if parent.format != "tflite":
            continue
        for strategy in references:
            for gran in [None] if strategy.name == "fp16" else opts.granularities:
                t0 = time.monotonic()
                data = _reference(parent_bytes, strategy.name, gran or "channel", parent.metadata)
                builder.add(variant_name(stem, parent.layout, strategy, None, gran, "float"), "tflite", data,
                            {"precision": "float16" if strategy.name == "fp16" else "dynamic-int8",
                             "strategy": {"name": strategy.name, "params": {}, "spec": strategy.spec},
                             "samples": None, "granularity": gran, "calibration": None,
                             "recipe": {"source": "fp16" if strategy.name == "fp16" else "dynamic_int8",
                                        "rules": None}}, t0)


def _tflite(parent_bytes, rng, recipe, input_range, io, md) -> bytes:
    data = emit_tflite.quantize_static(parent_bytes, rng, recipe, input_range)
    if io == "uint8":
        data = emit_tflite.uint8_input(data)
    return emit_tflite.append_metadata(data, md) if md else data


def _reference(parent_bytes, kind, gran, md) -> bytes:
    data = emit_tflite.reference(parent_bytes, kind, gran)
    return emit_tflite.append_metadata(data, md) if md else data


def _qdq(parent: Parent, rng, gran, input_range) -> bytes:
    import onnx

    data = emit_onnx.quantize_static(parent.onnx_model, rng, gran, input_range)
    m = onnx.load_from_string(data)
    if parent.onnx_model.metadata_props and not m.metadata_props:
        m.metadata_props.extend(parent.onnx_model.metadata_props)
        data = m.SerializeToString()
    return data


def _onnx_io(data: bytes) -> dict:
    import onnx

    m = onnx.load_from_string(data)

    def row(v):
        return {"name": v.name, "shape": [d.dim_value for d in v.type.tensor_type.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "scale": 0.0, "zero_point": 0}

    return {"inputs": [row(v) for v in m.graph.input], "outputs": [row(v) for v in m.graph.output]}


def summary_table(entries: list[dict], seconds: float) -> str:
    """What was built, one row per variant (markdown)."""
    lines = ["| variant | format | layout | strategy | samples | weights | input | KB | min SQNR dB | s |",
             "|" + "---|" * 10]
    for e in entries:
        sq = [r["sqnr_db"] for r in e["check"]["outputs"] if r["sqnr_db"] is not None]
        samples = e["samples"] if e["samples"] is not None else "-"
        lines.append(f"| {e['name']} | {e['model_format']} | {e['layout']} | {e['strategy']['spec']} | {samples} | "
                     f"{e['granularity'] or '-'} | {e['io']['input']['dtype']} | {e['bytes'] // 1024} | "
                     f"{f'{min(sq):.1f}' if sq else '-'} | {e['wall_seconds']:.1f} |")
    return "\n".join(lines) + f"\n\n{len(entries)} variants in {seconds:.0f} s\n"
