"""What produces the rows of the table: models run here, and results files made elsewhere.

A :class:`Source` is one row. A model source holds its runner, the output contract read from its tensors,
the class map (model class -> dataset category), the input transform and its precision as the tensors
show it; a predictions source (``--predictions NAME=preds.json``, e.g. the INT8 model run on the board's
NPU) holds the detections of a COCO results file, checked and normalised (polygons to RLE, a missing
``bbox`` derived from the mask as pycocotools' ``loadRes`` does).

Roles: ``float`` is the reference (``--float``, or a ``--model`` without quantized tensors), every other
row is compared against it. ``--float`` given a quantized model, or ``--int8`` a float one, is an input
error naming what the tensors show: a swapped pair would print a plausible table with the signs flipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from validator.data.coco import Dataset
from validator.data.labels import ClassMap, Labels, class_map, parse_labels, read_labels
from validator.data.preprocess import choose_transform
from validator.decode.contract import Contract, ContractError, identify
from validator.errors import InputError
from validator.hashing import sha256_file
from validator.overlap import calibration_overlap
from validator.runners import DelegateSpec, Runner, open_runner
from validator.tensors import INPUT_RANGES, InputTransform


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    role: str  # "float" | "int8" | "auto" (--model: INT8 when the model holds quantized tensors)
    manifest: dict | None = field(default=None, compare=False, hash=False)  # a quantizer variant's entry


def read_manifest(path: Path) -> list[ModelSpec]:
    """``quantize``'s ``variants.json``: every variant as a model of the run (its role read from its tensors:
    INT8 variants are compared with the float reference, float16 ones too). Format: docs/quantizer.md."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{p}: cannot read variants file ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: invalid JSON ({getattr(e, 'msg', e)})") from None
    if not (isinstance(doc, dict) and doc.get("format") == "qharness-variants"
            and isinstance(doc.get("variants"), list)):
        raise InputError(f"{p}: not a quantize variants.json (format 'qharness-variants' with a 'variants' list)")
    specs = []
    for i, v in enumerate(doc["variants"]):
        if not isinstance(v, dict) or not isinstance(v.get("path"), str):
            raise InputError(f"{p}: variants[{i}] has no 'path'")
        specs.append(ModelSpec(p.parent / v["path"], "auto", v))
    if not specs:
        raise InputError(f"{p}: lists no variants" + (" (its quantize run was interrupted before the first one was "
                                                      "finished)" if doc.get("complete") is False else ""))
    if doc.get("complete") is False:  # an interrupted quantize run: said once, on its first variant
        first = specs[0]
        specs[0] = ModelSpec(first.path, first.role, {**first.manifest, "index_incomplete": (
            f"{p.name} is from an interrupted quantize run: {len(specs)} of {doc.get('planned', '?')} planned "
            "variants were finished")})
    return specs


@dataclass(frozen=True)
class PredictionsSpec:
    name: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> PredictionsSpec:
        name, eq, path = text.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise InputError(f"--predictions {text}: expected NAME=preds.json")
        return cls(name.strip(), Path(path.strip()))


@dataclass
class Source:
    """One row of the table (mutable: predictions, timing and cache state are filled as the run goes)."""

    name: str
    kind: str  # "model" | "predictions"
    path: Path
    sha256: str
    role: str  # "float" | "int8" | "predictions"
    label: str  # table label, from what the model is (never from the flag)
    has_masks: bool
    runner: Runner | None = None
    contract: Contract | None = None
    class_map: ClassMap | None = None
    transform: InputTransform | None = None
    precision: str | None = None
    box_units: str | None = None
    predictions_path: Path | None = None  # the results file (in the output staging folder once written)
    num_predictions: int = 0
    compact: dict | None = None  # predictions.compact of the results file, once metrics have read it
    proto_masks: bool = False  # every detection also carries its mask on the prototype grid
    pending: list[dict] | None = None  # a results file's checked detections, until written out
    timing: dict = field(default_factory=dict)
    nonfinite: dict = field(default_factory=dict)  # output name -> images with NaN/Inf
    dropped_detections: int = 0  # detections of model classes the dataset lacks
    cached: bool = False
    notes: list[str] = field(default_factory=list)
    manifest: dict | None = None  # the quantizer variant's manifest entry (validate --manifest)

    def describe(self) -> dict:
        """The source's entry in summary.json (without metrics)."""
        d = {"name": self.name, "kind": self.kind, "role": self.role, "label": self.label, "path": str(self.path),
             "sha256": self.sha256}
        if self.runner is not None:
            r = self.runner
            d.update({
                "format": r.kind, "precision": {"label": r.precision.label, "evidence": r.precision.evidence},
                "input": {"name": r.input.name, "shape": list(r.input.shape), "dtype": r.input.dtype,
                          "layout": r.input.layout, "quantization": [r.input.scale, r.input.zero_point]},
                "input_transform": self.transform.describe() if self.transform else None,
                "outputs": [{"name": o.name, "shape": list(o.shape), "dtype": o.dtype,
                             "quantization": [o.scale, o.zero_point]} for o in r.outputs],
                "contract": self.contract.describe() if self.contract else None, "box_units": self.box_units,
                "metadata_source": (r.metadata or {}).get("source"),
                "delegate": r.delegate.describe() if getattr(r, "delegate", None) else None,
            })
        if self.class_map is not None:
            cm = self.class_map.category_of
            n = max([*cm, *(i for i, _ in self.class_map.dropped), -1]) + 1
            d["class_map"] = [cm.get(i) for i in range(n)]  # model class index -> category id (None: dropped)
            d["classes"] = {**self.class_map.describe(), "detections_dropped": self.dropped_detections}
        d["predictions"] = f"predictions/{self.name}.json"
        d["num_predictions"] = self.num_predictions
        if self.notes:
            d["notes"] = list(self.notes)
        return d


def _unique_name(stem: str, used: set[str]) -> str:
    name, i = stem, 2
    while name in used:
        name, i = f"{stem}-{i}", i + 1
    used.add(name)
    return name


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".onnx", ".tflite", ".json"):
        name = name.removesuffix(suffix)
    return name


def _model_labels(runner: Runner, path: Path) -> Labels | None:
    md = runner.metadata or {}
    if md.get("names"):
        return Labels(dict(enumerate(md["names"])), f"{path} metadata names ({md.get('source')})")
    lf = md.get("label_file")
    if lf:
        return parse_labels(lf["text"], f"{path}: {lf['where']}", Path(lf["name"]).suffix)
    return None


def open_model(spec: ModelSpec, ds: Dataset, settings, name: str, threads: int | None,
               delegate: DelegateSpec | None) -> Source:
    runner = open_runner(spec.path, threads, delegate)
    prec = runner.precision
    fmt = "ONNX" if runner.kind == "onnx" else "TFLite"
    if spec.role == "float" and prec.quantized:
        raise InputError(f"{spec.path}: given as --float but the model is quantized ({fmt} {prec.label}: "
                         f"{prec.evidence}); pass it with --int8, or give the float model as --float")
    if spec.role == "int8" and not prec.quantized:
        raise InputError(f"{spec.path}: given as --int8 but it holds no quantized tensors ({fmt} {prec.label}: "
                         f"{prec.evidence}); pass it with --float or --model")
    role = spec.role if spec.role != "auto" else ("int8" if prec.quantized else "float")
    try:
        contract = identify(runner.outputs, runner.input.hw, boxes=settings.boxes, model_name=str(spec.path))
    except ContractError as e:
        raise InputError(str(e)) from None
    md = runner.metadata or {}
    if not settings.names and md.get("names") and contract.num_classes and len(md["names"]) != contract.num_classes:
        raise InputError(f"{spec.path}: metadata names {len(md['names'])} classes but the outputs hold "
                         f"{contract.num_classes}; give the right names with --names")
    labels = read_labels(settings.names) if settings.names else _model_labels(runner, spec.path)
    cmap = class_map(ds.categories, labels, contract.num_classes or None, explicit=bool(settings.names),
                     model=str(spec.path), dataset=str(ds.annotations_path))
    if settings.task == "segment" and not contract.num_masks:
        raise InputError(f"{spec.path}: --task segment but the model has no mask outputs ({contract.describe()})")
    transform = choose_transform(runner.input, md.get("normalization"), settings.input_range)
    made = ((spec.manifest or {}).get("calibration") or {}).get("input_transform") or {}
    if settings.input_range is None and made.get("range") in INPUT_RANGES and made["range"] != transform.label:
        # the quantizer's manifest says what the model was calibrated on; a 16-bit symmetric input's own
        # range (-1..1 for 0..1 data) cannot
        why = f"quantize manifest: calibrated on {made['range']} input (its own range suggested {transform.label})"
        transform = InputTransform.from_range(made["range"], why)
    src = Source(name=name, kind="model", path=spec.path, sha256=sha256_file(spec.path), role=role,
                 label=f"{fmt} {prec.label} ({name})", has_masks=bool(contract.num_masks) and settings.task != "detect",
                 runner=runner, contract=contract, class_map=cmap, transform=transform, precision=prec.label)
    if "matches no convention" in transform.source:
        src.notes.append(f"input range: {transform.source}; give --input-range if the model expects another")
    manifest = spec.manifest or {}
    src.manifest = spec.manifest
    if manifest.get("index_incomplete"):
        src.notes.append(manifest["index_incomplete"])
    src.notes += [f"quantize warned: {w}" for w in manifest.get("warnings", [])]
    overlap = calibration_overlap(spec.manifest, ds) if spec.manifest else None
    if overlap and overlap["evaluated"]:
        src.notes.append(f"calibrated on {overlap['evaluated']} of the images evaluated here (of its "
                         f"{overlap['calibration_images']} calibration images, by {overlap['by']}): its numbers are "
                         "optimistic")
    return src


# ------------------------------------------------------------------------------------------ results files
def _bad(path: Path, msg: str) -> InputError:
    return InputError(f"{path}: not a COCO results file: {msg}")


def load_predictions(spec: PredictionsSpec, ds: Dataset, name: str) -> Source:
    """A COCO results file as a row: checked, polygons -> RLE, missing bbox from the mask, our order later."""
    from pycocotools import mask as mask_utils

    p = spec.path
    if not p.is_file():
        raise InputError(f"{p}: predictions file not found")
    try:
        doc = json.loads(p.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: invalid JSON ({getattr(e, 'msg', e)}); is the file truncated?") from None
    if isinstance(doc, dict) and isinstance(doc.get("annotations"), list):
        doc = doc["annotations"]
    if not isinstance(doc, list):
        raise _bad(p, "expected a JSON list of detections")
    all_images = {im["id"]: im for im in ds.all_images}
    evaluated = {r.id for r in ds.images}
    cats = {c["id"] for c in ds.categories}
    out, dropped_cat, outside = [], 0, 0
    unknown_cats: set[int] = set()
    with_masks = False
    for i, d in enumerate(doc):
        if not isinstance(d, dict) or not all(k in d for k in ("image_id", "category_id", "score")):
            raise _bad(p, f"entry {i} lacks one of image_id, category_id, score")
        if "bbox" not in d and "segmentation" not in d:
            raise _bad(p, f"entry {i} has neither bbox nor segmentation")
        iid, cid = d["image_id"], d["category_id"]
        if not isinstance(iid, int) or not isinstance(cid, int) or isinstance(iid, bool):
            raise _bad(p, f"entry {i} has a non-integer image_id or category_id")
        if iid not in all_images:
            raise InputError(f"{p}: entry {i} refers to image_id {iid}, which is not in {ds.annotations_path}")
        score = d["score"]
        if not isinstance(score, (int, float)) or not np.isfinite(score):
            raise _bad(p, f"entry {i} has a non-numeric score")
        if iid not in evaluated:
            outside += 1
            continue
        if cid not in cats:
            dropped_cat += 1
            unknown_cats.add(cid)
            continue
        r = {"image_id": iid, "category_id": cid}
        seg = d.get("segmentation")
        if seg is not None:
            im = all_images[iid]
            h, w = int(im["height"]), int(im["width"])
            try:
                if isinstance(seg, list):  # polygons
                    rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
                    rle = mask_utils.frPyObjects(seg, h, w)
                elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
                    rle = {"size": [int(v) for v in seg["size"]], "counts": seg["counts"]}
                    if isinstance(rle["counts"], str):
                        rle["counts"] = rle["counts"].encode("ascii")
                else:
                    raise ValueError("unknown segmentation form")
            except (ValueError, TypeError, IndexError) as e:
                raise _bad(p, f"entry {i} has an unreadable segmentation ({e})") from None
            if list(rle["size"]) != [h, w]:
                raise _bad(p, f"entry {i}: mask size {list(rle['size'])} but image {iid} is {h}x{w}")
            counts = rle["counts"]
            r["segmentation"] = {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes)
                                 else counts}
            if "bbox" not in d:
                r["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]  # as pycocotools loadRes derives it
            with_masks = True
        if "bbox" in d:
            b = d["bbox"]
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
                raise _bad(p, f"entry {i} has a malformed bbox")
            r["bbox"] = [float(v) for v in b]
        # the key order of our own results dicts, so equal detections are written byte for byte alike
        out.append({"image_id": iid, "category_id": cid, "bbox": r["bbox"], "score": float(score),
                    **({"segmentation": r["segmentation"]} if "segmentation" in r else {})})
    if doc and not out and dropped_cat:
        raise InputError(f"{p}: none of the detections' category ids ({sorted(unknown_cats)[:5]}) is a category "
                         f"of {ds.annotations_path}")
    from validator.predictions import canonical

    src = Source(name=name, kind="predictions", path=p, sha256=sha256_file(p), role="predictions",
                 label=f"Predictions ({name})", has_masks=with_masks, pending=canonical(out),
                 dropped_detections=dropped_cat)
    if dropped_cat:
        src.notes.append(f"{dropped_cat} detections of category ids not in the dataset dropped "
                         f"({sorted(unknown_cats)[:10]})")
    if outside:
        src.notes.append(f"{outside} detections on images not evaluated in this run (e.g. --limit) ignored")
    src.timing = {"images": 0}
    return src


def threads_per_model(models: int) -> int:
    """Intra-op threads of each of several models, which run side by side (validator.inference.run_models):
    the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // models)


def open_sources(models: list[ModelSpec], predictions: list[PredictionsSpec], ds: Dataset, settings,
                 threads: int | None, delegate: DelegateSpec | None) -> list[Source]:
    used: set[str] = set()
    if threads is None and len(models) > 1:
        threads = threads_per_model(len(models))
    out = [open_model(m, ds, settings, _unique_name(_stem(m.path), used), threads, delegate) for m in models]
    out += [load_predictions(p, ds, _unique_name(p.name, used)) for p in predictions]
    return out


def reference(sources: list[Source]) -> Source | None:
    """The float reference every other row is compared against: the first float-role source."""
    return next((s for s in sources if s.role == "float"), None)
