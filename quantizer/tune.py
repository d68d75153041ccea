"""``quantize --tune T --max-drop D``: accuracy-aware quantization judged by the detection metric itself.

Other tools judge a quantized model by tensor error or by a user callback; here every candidate is scored
with the validator (same preprocessing, decoding and COCO evaluation as ``validate``) on a *tune* split of
COCO-format images that must be disjoint, by content, from the calibration images (and from ``--eval``, the
final evaluation set, when given): an overlap is an input error, found before the long work.

The search, cheapest first:

1. **All-INT8 candidates**: every variant the sweep builds (strategies x sample counts x granularities x
   layouts x I/O) is scored; the best becomes the base. That is range selection at the level of the graph
   (one strategy for every tensor), and the layout choice (split vs monolithic outputs).
2. **Mixed precision** (``--allow int16|float``), only while the base drops more than ``--max-drop`` pts
   mAP@0.5:0.95 (boxes) below the float model on the tune split: the tensors that add most error against
   the float parent (:func:`validator.diagnose.layers.layer_errors`) are tried one at a time in higher
   precision (:func:`validator.diagnose.layers.layer_sensitivity`: ``--tune-layers`` probes), then promoted
   cumulatively in the order of their measured win, fewest first, until the drop holds or ``--budget``
   promotions are spent. A layer whose probe won nothing is not promoted.

Every scored candidate is a row of ``search.json`` (the change, its tune metrics, model bytes, int16/float
op counts, CPU ms/image), written atomically after each one, so Ctrl-C leaves a valid file; scores are
cached there by model sha256 and tune-split hash, so a re-run resumes without scoring a model twice. The
winner is written as a variant (``<base>.tuned``) with a manifest like any other (plus ``tune`` and
``op_precisions``: the precision of every op) and added to ``variants.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from validator.errors import InputError

SEARCH_FORMAT = "qharness-search"
ALLOW = ("none", "int16", "float")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the search: ``search.json`` holds the candidates scored so far (``complete`` false)."""

    def __init__(self, path: Path, rows: int):
        super().__init__()
        self.path, self.rows = path, rows

    def message(self) -> str:
        return (f"interrupted: {self.path} lists the {self.rows} candidates scored so far (complete: false); "
                "run the same command with --force to resume (scores are reused)")


@dataclass(frozen=True)
class TuneOptions:
    data: Path  # the tune split: a COCO-format dataset (folder or annotation JSON)
    max_drop: float = 1.0  # pts of mAP@0.5:0.95 (boxes) below the float model on the tune split
    allow: str = "none"  # none | int16 | float: what a sensitive layer may be promoted to
    budget: int = 8  # cumulative promotions tried at most
    layers: int = 8  # single-layer probes (the tensors adding most error)
    layer_images: int = 4  # images the layer-wise error is measured on (the first of the tune split)
    eval: Path | None = None  # the final evaluation set, checked disjoint from the tune split
    bias_correction: bool = True  # try empirical bias correction of the best all-INT8 variant
    bias_images: int = 32  # calibration images the bias correction is measured on
    max_mask_drop: float = 0.5  # segmentation: no candidate may lose more mask mAP@0.5:0.95 than this (or its base)


# ------------------------------------------------------------------------------------------ overlap
def _digests(paths) -> dict[str, Path]:
    from validator.hashing import sha256_file

    out: dict[str, Path] = {}
    for p in paths:
        out.setdefault(sha256_file(Path(p)), Path(p))
    return out


def prepare(topts: TuneOptions, calib_paths) -> object:
    """The tune dataset, checked: not empty, disjoint by content from the calibration images and from
    ``--eval``. InputError (exit 2) names the first shared image of each pair."""
    from validator.data.coco import load_dataset

    if topts.allow not in ALLOW:
        raise InputError(f"--allow {topts.allow}: expected one of {', '.join(ALLOW)}")
    if topts.max_drop < 0 or topts.budget < 0 or topts.layers < 0 or topts.layer_images < 1:
        raise InputError("need --max-drop >= 0, --budget >= 0, --tune-layers >= 0")
    ds = load_dataset(topts.data)
    if not ds.images:
        raise InputError(f"{topts.data}: the tune split lists no images")
    tune = _digests(r.path for r in ds.images)
    for what, paths in (("calibration", calib_paths),
                        ("evaluation (--eval)", [r.path for r in load_dataset(topts.eval).images] if topts.eval
                         else [])):
        shared = [(tune[h], p) for h, p in _digests(paths).items() if h in tune]
        if shared:
            a, b = shared[0]
            raise InputError(f"{topts.data}: {len(shared)} tune images are also {what} images (by content; "
                             f"first: {a} = {b}); the tune split must be disjoint from both")
    return ds


def split_hash(ds) -> str:
    from validator.hashing import sha256_file

    h = hashlib.sha256()
    for r in ds.images:
        h.update(f"{r.id}\0{sha256_file(Path(r.path))}\n".encode())
    h.update(json.dumps(ds.gt.get("annotations", []), sort_keys=True).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ search record
class Search:
    """``search.json``: every candidate scored so far, rewritten atomically after each."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings
        self.rows: list[dict] = []
        self.cache: dict[str, dict] = {}
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("format") == SEARCH_FORMAT and \
                old.get("tune_sha256") == settings["tune_sha256"]:
            for r in old.get("candidates", []) + [old.get("float") or {}]:
                if r.get("sha256") and r.get("tune"):
                    self.cache[r["sha256"]] = r["tune"]
        self.float: dict | None = None
        self.winner: str | None = None
        self.winner_sha256: str | None = None
        self.mask_limit: float | None = None  # set once the base is known (segmentation models)
        self.stopped: str | None = None

    def score(self, model: bytes, scorer, suffix: str | None = None) -> tuple[dict, bool]:
        h = hashlib.sha256(model).hexdigest()
        if h in self.cache:
            return self.cache[h], True
        got = scorer.metrics(model, suffix)
        self.cache[h] = got
        return got, False

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.write(complete=False)

    def write(self, complete: bool) -> None:
        doc = {"format": SEARCH_FORMAT, "version": 1, **self.settings, "float": self.float,
               "complete": complete, "winner": self.winner, "winner_sha256": self.winner_sha256,
               "stopped": self.stopped, "candidates": self.rows}
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.path)


def _row(kind: str, change: str, name: str, model: bytes, tune: dict, float_tune: dict, cached: bool,
         audit: dict | None, extra: dict | None = None) -> dict:
    return {"kind": kind, "change": change, "model": name, "sha256": hashlib.sha256(model).hexdigest(),
            "bytes": len(model), "tune": tune, "drop": round(float_tune["mAP50_95"] - tune["mAP50_95"], 4),
            "mask_drop": (round(float_tune["mask_mAP50_95"] - tune["mask_mAP50_95"], 4)
                          if "mask_mAP50_95" in float_tune and "mask_mAP50_95" in tune else None),
            "int16_ops": (audit or {}).get("int16"), "float_ops": (audit or {}).get("float"),
            "ops": (audit or {}).get("ops"), "cached": cached, **(extra or {})}


def _better(row: dict | None, than: dict, rec: Search) -> bool:
    """``row`` wins over ``than``: more box mAP on the tune split, and for segmentation models no more mask
    mAP lost than ``rec.mask_limit`` (the search judges boxes; it must not buy them with masks)."""
    if row is None or row.get("model") is None or row["tune"]["mAP50_95"] <= than["tune"]["mAP50_95"]:
        return False
    return rec.mask_limit is None or row.get("mask_drop") is None or row["mask_drop"] <= rec.mask_limit


def _audit(model: bytes, suffix: str) -> dict | None:
    import tempfile

    from validator.diagnose.graph import op_audit

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"m{suffix}"
        p.write_bytes(model)
        return op_audit(p)


# ------------------------------------------------------------------------------------------ the search
def search(opts, topts: TuneOptions, ds, entries: list[dict], log: Callable[[str], None],
           progress_factory=None) -> dict:
    """Score the built variants, then promote layers while the drop exceeds ``max_drop`` (module docstring).
    Returns ``{"search": path, "winner": entry | None, "table": markdown}``; the winner's entry is written
    beside the others (the caller adds it to ``variants.json``)."""
    from validator.diagnose.score import Scorer
    from validator.progress import Progress
    from validator.run import Settings

    settings = Settings(resize=opts.resize, resample=opts.resample)
    tune_sha = split_hash(ds)
    rec = Search(opts.out / "search.json", {
        "tune": {"source": str(Path(topts.data).resolve()), "images": len(ds.images), "tune_sha256": tune_sha},
        "tune_sha256": tune_sha, "max_drop": topts.max_drop, "allow": topts.allow, "budget": topts.budget,
        "layers": topts.layers, "metric": "mAP50_95 (boxes), points, on the tune split"})
    scorer = Scorer(ds, settings)
    n_out = max((len(e["io"]["outputs"]) for e in entries), default=0)
    steps = 1 + len(entries) + int(topts.bias_correction) + \
        (topts.layers + n_out + topts.budget if topts.allow != "none" else 0)
    t0 = time.monotonic()
    try:
        with Progress(steps, "quantize: tune", "candidates", quiet=opts.quiet) as p:
            fmodel = opts.model.read_bytes()
            ftune, _ = rec.score(fmodel, scorer, opts.model.suffix.lower())
            rec.float = {**ftune, "model": str(opts.model), "sha256": hashlib.sha256(fmodel).hexdigest(), "tune": ftune}
            p.update()
            log(f"quantize: tune: float {opts.model.name}: mAP50-95 {rec.float['mAP50_95']:.2f} on {len(ds.images)} "
                "tune images")
            base, base_row = None, None
            for e in entries:
                data = (opts.out / e["path"]).read_bytes()
                tune, cached = rec.score(data, scorer, "." + e["model_format"])
                audit = _audit(data, "." + e["model_format"])
                row = _row("variant", f"{e['strategy']['spec']}, {e['layout']}, n{e['samples']}, {e['granularity']}",
                           e["name"], data, tune, rec.float, cached, audit)
                rec.add(row)
                p.update()
                better = base_row is None or tune["mAP50_95"] > base_row["tune"]["mAP50_95"]
                if e.get("precision") == "int8" and better:
                    base, base_row = e, row
            if base is None:
                rec.stopped = "no INT8 variant to start from"
                rec.write(True)
                return {"search": rec.path, "winner": None, "table": table(rec)}
            log(f"quantize: tune: best all-INT8 {base['name']}: drop {base_row['drop']:+.2f} pts")
            if base_row.get("mask_drop") is not None:
                rec.mask_limit = max(topts.max_mask_drop, base_row["mask_drop"])
            base_model = (opts.out / base["path"]).read_bytes()
            winner_model, winner_rules, winner_row, corrected = None, [], base_row, None
            if topts.bias_correction and base["model_format"] == "tflite" and base_row["drop"] > topts.max_drop:
                bc_model, bc_row = _bias_corrected(opts, topts, base, base_model, rec, scorer, log)
                p.update()
                if _better(bc_row, base_row, rec):
                    winner_model, winner_row, corrected = bc_model, bc_row, bc_row["bias_correction"]
            if winner_row["drop"] <= topts.max_drop:
                rec.stopped = f"all-INT8 {winner_row['model']} within --max-drop {topts.max_drop:g}"
            elif topts.allow == "none":
                rec.stopped = "--allow none: no layer may leave INT8; best all-INT8 candidate kept"
            elif base["model_format"] != "tflite":
                rec.stopped = "mixed precision needs a TFLite variant (ai-edge-quantizer recipes)"
            elif base["io"]["input"]["dtype"] == "uint8":
                rec.stopped = "mixed precision from a uint8-input variant is not supported: tune an --io int8 sweep"
            else:
                m, rules, row = _promote(opts, topts, ds, base, base_row, rec, scorer, p, log)
                if m is not None and corrected is not None:  # the base won with its biases corrected: so may this
                    cm, crow = _bias_corrected(opts, topts, base, m, rec, scorer, log, row)
                    if _better(crow, row, rec):
                        m, row = cm, crow
                if m is not None and _better(row, winner_row, rec):
                    winner_model, winner_rules, winner_row = m, rules, row
                    corrected = row.get("bias_correction")
            p.update(max(0, steps - p.done))
    except KeyboardInterrupt:
        rec.write(False)
        raise Interrupted(rec.path, len(rec.rows)) from None
    finally:
        scorer.close()
    rec.winner, rec.winner_sha256 = winner_row["model"], winner_row["sha256"]
    out = {"search": rec.path, "winner": None, "table": ""}
    if winner_model is not None:
        out["winner"] = _winner_entry(opts, base, winner_model, winner_rules, winner_row, rec, corrected)
        rec.winner = out["winner"]["name"]
    rec.write(True)
    log(f"quantize: tune: {len(rec.rows)} candidates in {time.monotonic() - t0:.0f} s; winner {rec.winner} "
        f"(drop {winner_row['drop']:+.2f} pts; {rec.stopped})")
    out["table"] = table(rec)
    return out


def _calibration_samples(opts, parent_path: Path, n: int) -> list:
    from quantizer.calibration import SampleSource, calibration_images
    from quantizer.run import transform_of
    from validator.runners import open_runner
    from validator.runners.tflite import quiet_stderr

    with quiet_stderr():
        r = open_runner(parent_path)
    src = SampleSource(calibration_images(opts.calib), r.input, transform_of(r), opts.resize, opts.resample)
    return [x.copy() for _, x in src(0, n)]


def _bias_corrected(opts, topts, base: dict, model: bytes, rec: Search, scorer, log, of_row: dict | None = None):
    """The candidate ``model`` with empirical bias correction (quantizer/bias_correction.py), scored."""
    from quantizer import bias_correction

    parent_path = Path(base["parent_model"]["path"])
    if base["io"]["input"]["dtype"] == "uint8":
        return None, None
    n = min(topts.bias_images, max(base["samples"] or 0, 1))
    log(f"quantize: tune: bias correction of {of_row['model'] if of_row else base['name']} on {n} calibration images")
    try:
        fixed, rep = bias_correction.correct(parent_path.read_bytes(), model,
                                             _calibration_samples(opts, parent_path, n))
    except Exception as e:  # noqa: BLE001  recorded, the search goes on without it
        rec.add({"kind": "bias correction", "change": "empirical bias correction", "model": None,
                 "error": " ".join(str(e).split())[:200]})
        return None, None
    tune, cached = rec.score(fixed, scorer)
    ref = of_row or rec.rows[[r.get("model") for r in rec.rows].index(base["name"])]
    row = _row("bias correction", f"{ref['change']} + empirical bias correction ({rep['corrected']} layers)",
               f"{ref['model']}+bc", fixed, tune, rec.float, cached, _audit(fixed, ".tflite"),
               {"bias_correction": rep, "win": round(tune["mAP50_95"] - ref["tune"]["mAP50_95"], 4)})
    rec.add(row)
    return fixed, row


def _promote(opts, topts, ds, base: dict, base_row: dict, rec: Search, scorer, p, log):
    """Single-layer probes, then cumulative promotion in the order of the measured wins."""
    from quantizer.emit_tflite import append_metadata, read_metadata, uint8_input
    from validator.data.preprocess import InputMaker, Resample, ResizeMode, choose_transform, letterbox, load_image
    from validator.diagnose import layers
    from validator.runners import open_runner
    from validator.runners.tflite import quiet_stderr

    parent_path = Path(base["parent_model"]["path"])
    parent = parent_path.read_bytes()
    model = (opts.out / base["path"]).read_bytes()
    recipe = base["recipe"]["rules"]
    rng = tuple(base["calibration"]["input_range"])
    io = base["io"]["input"]["dtype"]
    md = read_metadata(parent)

    def finish(m: bytes) -> bytes:  # the same I/O and metadata as the base variant
        m = uint8_input(m) if io == "uint8" else m
        return append_metadata(m, md) if md else m

    with quiet_stderr():
        prunner = open_runner(parent_path)
    maker = InputMaker(prunner.input, choose_transform(prunner.input, prunner.metadata.get("normalization")))
    samples = [maker(letterbox(load_image(r.path), prunner.input.hw, ResizeMode(opts.resize),
                               Resample(opts.resample))[0]).copy() for r in ds.images[:topts.layer_images]]
    log(f"quantize: tune: layer-wise error of {base['name']} on {len(samples)} tune images")
    rows = layers.layer_errors(parent, model, samples)
    worst = layers.worst(rows, topts.layers)
    # the tensors that *are* the outputs come first: their int8 step is a floor no inner layer can lift (a box
    # edge moves in steps of scale x input size; docs/measurements/quantizer.md#tune)
    depths = layers.tensor_depths(model)
    outs = [o["name"] for o in base["io"]["outputs"] if o["name"] in depths]
    heads = [{"tensor": n, **{k: depths[n][k] for k in ("depth", "op", "scope", "consumers")},
              "sqnr_db": next((r["sqnr_db"] for r in rows if r["tensor"] == n), None)} for n in outs]
    worst = heads + [c for c in worst if c["tensor"] not in outs]
    precision = topts.allow
    base_rule = next((r for r in reversed(recipe) if r.get("algorithm_key") != "no_quantize"), None)
    probes = []
    for c in worst:
        try:
            rules = layers.keep_rules(c, precision, base_rule)
            m = finish(layers.rebuild(parent, model, recipe, rules, rng))
        except Exception as e:  # noqa: BLE001  a layer ai-edge-quantizer cannot re-make is recorded, not fatal
            rec.add({"kind": "probe", "change": f"{c['op']} #{c['depth']} in {precision}", "model": None,
                     "error": " ".join(str(e).split())[:200], "tensor": c["tensor"]})
            p.update()
            continue
        tune, cached = rec.score(m, scorer)
        row = _row("probe", f"{c['op']} #{c['depth']} in {precision}", f"{base['name']}+{c['op']}#{c['depth']}",
                   m, tune, rec.float, cached, _audit(m, ".tflite"),
                   {"tensor": c["tensor"], "depth": c["depth"], "op": c["op"], "sqnr_db": c["sqnr_db"],
                    "win": round(tune["mAP50_95"] - base_row["tune"]["mAP50_95"], 4), "rules": rules})
        rec.add(row)
        probes.append(row)
        p.update()
    p.update(max(0, topts.layers + len(heads) - len(worst)))
    order = sorted((r for r in probes if r["win"] > 0), key=lambda r: (-r["win"], r["depth"]))
    best_model, best_rules, best_row = None, [], base_row
    rules: list[dict] = []
    for k, pr in enumerate(order[:topts.budget], 1):
        if best_row["drop"] <= topts.max_drop:
            break
        rules = rules + pr["rules"]
        try:
            m = finish(layers.rebuild(parent, model, recipe, rules, rng))
        except Exception as e:  # noqa: BLE001
            rec.add({"kind": "promotion", "change": f"+ {pr['change']}", "model": None,
                     "error": " ".join(str(e).split())[:200]})
            p.update()
            continue
        tune, cached = rec.score(m, scorer)
        row = _row("promotion", f"{k} layers in {precision} (+ {pr['op']} #{pr['depth']})",
                   f"{base['name']}+{k}layers", m, tune, rec.float, cached, _audit(m, ".tflite"),
                   {"layers": [q["tensor"] for q in order[:k]], "rules": rules})
        rec.add(row)
        p.update()
        if _better(row, best_row, rec):
            best_model, best_rules, best_row = m, rules, row
    if best_row["drop"] <= topts.max_drop:
        rec.stopped = f"--max-drop {topts.max_drop:g} holds with {best_row['change']}"
    elif not order:
        rec.stopped = f"no single layer in {precision} won anything on the tune split"
    elif len(order) <= topts.budget:
        rec.stopped = (f"every layer that won on its own is promoted ({len(order)} of {len(probes)} probes won): best "
                       f"drop {best_row['drop']:+.2f} pts")
    else:
        rec.stopped = f"--budget {topts.budget} promotions spent: best drop {best_row['drop']:+.2f} pts"
    return best_model, best_rules, best_row


def _winner_entry(opts, base: dict, model: bytes, rules: list[dict], row: dict, rec: Search,
                  corrected: dict | None = None) -> dict:
    from quantizer.check import FloatReference, compare
    from quantizer.common import sha256_bytes
    from quantizer.emit_tflite import io_description
    from quantizer.manifest import write_variant
    from validator.diagnose.graph import op_precisions

    name = base["name"] + ".tuned"
    path = opts.out / f"{name}.tflite"
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(model)
    os.replace(tmp, path)
    cal = base["calibration"]
    folder = Path(cal["source"])
    folder = folder / "images" if (folder / "images").is_dir() else folder
    checks = [(n, folder / n) for n in base["check"]["images"] if (folder / n).is_file()]
    ref = FloatReference(Path(base["parent_model"]["path"]), checks, opts.resize, opts.resample)
    io_desc = io_description(model)
    precisions = op_precisions(path)
    entry = {**base, "name": name, "path": path.name, "sha256": sha256_bytes(model), "bytes": len(model),
             "precision": "mixed" if any(r["precision"] in ("int16", "float") for r in precisions) else "int8",
             "recipe": {"source": f"tuned from {base['recipe']['source']}", "rules": base["recipe"]["rules"] + rules},
             "io": {"input": io_desc["inputs"][0], "outputs": io_desc["outputs"]},
             "check": {**base["check"], "outputs": compare(path, ref, base["layout"])},
             "tune": {"search": str(rec.path.resolve()), "source": rec.settings["tune"]["source"],
                      "tune_sha256": rec.settings["tune_sha256"], "images": rec.settings["tune"]["images"],
                      "base": base["name"], "change": row["change"], "metrics": row["tune"],
                      "float": {k: v for k, v in (rec.float or {}).items() if k != "model"}, "drop": row["drop"],
                      "max_drop": rec.settings["max_drop"], "allow": rec.settings["allow"]},
             "bias_correction": corrected, "op_precisions": precisions}
    entry.pop("warnings", None)
    write_variant(opts.out, entry)
    return entry


def table(rec: Search) -> str:
    """The printed search table (markdown): one row per candidate, the winner marked."""
    f = rec.float or {}
    nan = float("nan")
    lines = [f"Tune split: {rec.settings['tune']['images']} images; float mAP50-95 {f.get('mAP50_95', nan):.2f}"
             f" / mAP50 {f.get('mAP50', nan):.2f}; --max-drop {rec.settings['max_drop']:g} pts, --allow "
             f"{rec.settings['allow']}", "",
             "| # | kind | change | mAP50-95 | mAP50 | drop pts | mask drop pts | int16 ops | float ops | KB "
             "| ms/img | |",
             "|" + "---|" * 12]
    for i, r in enumerate(rec.rows, 1):
        if r.get("model") is None:
            lines.append(f"| {i} | {r['kind']} | {r['change']} | failed: {r.get('error', '')[:60]} | | | | | | | | |")
            continue
        t = r["tune"]
        mark = "winner" if r["sha256"] == rec.winner_sha256 else ""
        lines.append(f"| {i} | {r['kind']} | {r['change']} | {t['mAP50_95']:.2f} | {t['mAP50']:.2f} | "
                     f"{r['drop']:+.2f} | {'-' if r.get('mask_drop') is None else format(r['mask_drop'], '+.2f')} | "
                     f"{r['int16_ops'] if r['int16_ops'] is not None else '-'} | "
                     f"{r['float_ops'] if r['float_ops'] is not None else '-'} | {r['bytes'] // 1024} | "
                     f"{t['ms_per_image']:.1f} | {mark} |")
    lines += ["", f"stopped: {rec.stopped}", ""]
    return "\n".join(lines)


def add_to_index(out: Path, entry: dict) -> Path:
    """The tuned variant appended to ``variants.json`` (the sweep's index), which stays complete."""
    from quantizer.manifest import INDEX_NAME, load_index, write_index

    doc = load_index(out / INDEX_NAME)
    if doc is None:
        raise InputError(f"{out / INDEX_NAME}: variants.json is missing or unreadable after the sweep")
    entries = [{k: v for k, v in e.items() if k not in ("format", "version")} for e in doc["variants"]
               if e.get("name") != entry["name"]]
    return write_index(out, entries + [entry], doc["float_model"], doc["calibration"], doc["tool"], complete=True)
