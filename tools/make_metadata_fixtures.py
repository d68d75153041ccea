"""Make TFLite fixtures whose metadata was written by Google's own tooling (tflite-support), not by us.

The models under ``tests/fixtures/models/third_party/`` let our TFLite-metadata reader be tested against
files that nobody on this project laid out: the ``TFLITE_METADATA`` flatbuffer (file identifier ``M001``)
and the zip of associated files (label maps) are written by ``tflite-support`` 0.4.4's metadata writers
and ``MetadataPopulator``. Next to each ``<name>.tflite`` lies ``<name>.expected.json``: what
tflite-support's own reader (``MetadataDisplayer``) reports for that file, so a test in the project venv
can compare our reader with the reference reader without tflite-support installed.

Three steps, two virtual environments:

1. base models (project venv, ``/work/main/.venv``): ``tests/tiny_models.py`` writes tiny TFLite models
   (outputs = constant + gain * mean(dequantized input), gain 0 here, so every output is its constant);
2. metadata (tflite-support venv): the object-detector writer, the generic writer and the low-level
   ``MetadataPopulator`` populate each base model; ``MetadataDisplayer`` reads the result back into
   ``<name>.expected.json``;
3. check (project venv): ``ai_edge_litert``'s Interpreter loads every final model and runs it on a zero
   input; the outputs must equal the constants exactly. Its view of the tensors is added to the json.

Steps 1 and 3 run as subprocesses of step 2 (``--project-python``, default ``<repo>/.venv/bin/python``).

Commands (as run to make the committed files; Python 3.11.7, x86_64 Linux)::

    # tflite-support's pybind modules link libusb-1.0 (Debian: libusb-1.0-0), not in the pip wheel
    apt-get install -y libusb-1.0-0
    python3.11 -m venv /work/venvs/tfsupport
    /work/venvs/tfsupport/bin/pip install tflite-support==0.4.4 "numpy<2" "protobuf<4"
    #   -> tflite-support 0.4.4, numpy 1.26.4, protobuf 3.20.3, flatbuffers 25.12.19, absl-py 2.5.1
    /work/venvs/tfsupport/bin/python tools/make_metadata_fixtures.py
    #   project venv: ai-edge-litert 2.3.0, flatbuffers 25.12.19, numpy 2.4.6

tflite-support is a dev-only tool here, never a dependency of the project (it needs protobuf<4 and
numpy<2). The only thing this script changes in its behaviour is the clock while it packs the zip:
``zipfile`` stamps every entry with the local time, so the clock is pinned (UTC, ``ZIP_EPOCH``) to make
the files reproducible byte for byte.

Internal modes (called by the script itself): ``--write-base DIR`` (project venv) writes the base models
and ``<name>.base.json``; ``--check DIR`` (project venv) runs them and prints a json report.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "models" / "third_party"
ZIP_EPOCH = 1704067200  # 2024-01-01 00:00:00 UTC: the time stamp of every zip entry
HW = 64
TFS_VERSION = "0.4.4"

# COCO's 91-id label map in the TFLite Task Library style used by Google's SSD/EfficientDet models:
# line i (0-based) is the label of model class index i = COCO category id i + 1 (the postprocess op drops
# the background class), with "???" for the ten ids COCO never used.
COCO90 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "???", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "???", "backpack", "umbrella", "???", "???",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "???", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "???", "dining table",
    "???", "???", "toilet", "???", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "???", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]
assert len(COCO90) == 90 and COCO90.count("???") == 10

# The label files, byte for byte. yolo_float_imagenet's has no trailing newline on purpose (label files in
# the wild come both ways; TFLite Task Library readers accept both).
LABEL_FILES = {
    "ssd_uint8_m1p1": ("labelmap.txt", "\n".join(COCO90) + "\n"),
    "yolo_float_m1p1": ("labels.txt", "person\nbicycle\ncar\n"),
    "yolo_float_imagenet": ("yolo_labels.txt", "traffic light\nfire hydrant\nstop sign"),
}

# SSD detections (ymin, xmin, ymax, xmax normalised; class index into labelmap.txt; score). Row 3 is junk
# beyond num_detections (3): its class index 11 is a "???" gap and must be ignored whatever its score.
SSD_DETS = [((0.10, 0.20, 0.50, 0.60), 0, 0.90),    # person
            ((0.30, 0.40, 0.90, 0.80), 17, 0.75),   # dog (COCO id 18)
            ((0.55, 0.05, 0.95, 0.45), 61, 0.60)]   # chair (COCO id 62)
SSD_JUNK = ((0.0, 0.0, 1.0, 1.0), 11, 0.99)
# YOLO detections: (x1, y1, x2, y2) in input pixels, class, score; each sits on the stride-8 anchor nearest
# its centre; every other anchor has its own grid box (cx, cy, stride, stride) and all-zero scores.
YOLO_DETS = {
    "yolo_float_m1p1": [((8, 8, 40, 40), 0, 0.90), ((30, 20, 62, 52), 2, 0.80)],
    "yolo_float_imagenet": [((4, 30, 28, 62), 1, 0.85), ((36, 4, 60, 28), 2, 0.70)],
}


# ============================================================================ step 1: base models (project venv)
def _yolo_const(name: str) -> np.ndarray:
    from tests.tiny_models import anchor_grid

    nc = 3
    anchors = anchor_grid((HW, HW))
    n = len(anchors)
    strides = np.repeat([8.0, 16.0, 32.0], [(HW // s) ** 2 for s in (8, 16, 32)])
    a = np.zeros((4 + nc, n), np.float32)
    a[0], a[1], a[2], a[3] = anchors[:, 0], anchors[:, 1], strides, strides
    for box, cls, score in YOLO_DETS[name]:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        i = int(np.argmin(np.where(strides == 8, np.hypot(anchors[:, 0] - cx, anchors[:, 1] - cy), np.inf)))
        a[:4, i] = (cx, cy, box[2] - box[0], box[3] - box[1])
        a[4 + cls, i] = score
    return a[None]


def base_specs() -> dict:
    """name -> (tiny_models.tflite_model kwargs, outputs {name: const})."""
    k = 10
    boxes = np.zeros((1, k, 4), np.float32)
    classes = np.zeros((1, k), np.float32)
    scores = np.zeros((1, k), np.float32)
    for j, (box, cls, score) in enumerate([*SSD_DETS, SSD_JUNK]):
        boxes[0, j], classes[0, j], scores[0, j] = box, cls, score
    ssd = {"TFLite_Detection_PostProcess": boxes, "TFLite_Detection_PostProcess:1": classes,
           "TFLite_Detection_PostProcess:2": scores,
           "TFLite_Detection_PostProcess:3": np.array([float(len(SSD_DETS))], np.float32)}
    return {
        # TF-OD-API SSD convention: uint8 input that dequantizes to [-1, 1) (scale 1/128, zero point 128)
        "ssd_uint8_m1p1": (dict(input_shape=[1, HW, HW, 3], input_dtype="uint8", input_quant=(1 / 128, 128),
                                input_name="normalized_input_image_tensor"), ssd),
        "yolo_float_m1p1": (dict(input_shape=[1, HW, HW, 3], input_name="images"),
                            {"output0": _yolo_const("yolo_float_m1p1")}),
        "yolo_float_imagenet": (dict(input_shape=[1, HW, HW, 3], input_name="images"),
                                {"output0": _yolo_const("yolo_float_imagenet")}),
    }


def write_base(dest: Path) -> None:
    sys.path.insert(0, str(REPO))
    from tests.tiny_models import tflite_model

    dest.mkdir(parents=True, exist_ok=True)
    for name, (kw, outs) in base_specs().items():
        tflite_model(dest / f"{name}.tflite", gain=0.0,
                     outputs={k: (v, "float32", None) for k, v in outs.items()}, **kw)
        desc = {"generator": "tests/tiny_models.py tflite_model (outputs = constant + gain * mean(input))",
                "gain": 0.0,
                "input": {"name": kw["input_name"], "shape": kw["input_shape"],
                          "dtype": kw.get("input_dtype", "float32"),
                          "quantization": list(kw["input_quant"]) if kw.get("input_quant") else None},
                "outputs": [{"name": k, "shape": list(v.shape), "dtype": "float32",
                             "values": [float(x) for x in v.ravel()]} for k, v in outs.items()]}
        (dest / f"{name}.base.json").write_text(json.dumps(desc))


# ============================================================================ step 3: check (project venv)
def check(src: Path) -> dict:
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    report = {}
    for model in sorted(src.glob("*.tflite")):
        base = json.loads((src / f"{model.stem}.base.json").read_text())
        it = Interpreter(model_path=str(model))
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        it.invoke()
        outs = []
        for d, want in zip(it.get_output_details(), base["outputs"], strict=True):
            got = it.get_tensor(d["index"])
            assert d["name"] == want["name"], (d["name"], want["name"])
            expect = np.array(want["values"], np.float32).reshape(want["shape"])
            assert got.dtype == np.float32 and np.array_equal(got, expect), f"{model.name}: {d['name']}"
            outs.append({"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": d["dtype"].__name__,
                         "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]})
        report[model.stem] = {
            "model_unchanged_but_metadata": _same_but_metadata(src / f"{model.stem}.base.bin", model),
            "ai_edge_litert_version": ai_edge_litert.__version__ if hasattr(ai_edge_litert, "__version__")
            else _dist_version("ai-edge-litert"),
            "input": {"name": inp["name"], "shape": [int(x) for x in inp["shape"]], "dtype": inp["dtype"].__name__,
                      "quantization": [float(inp["quantization"][0]), int(inp["quantization"][1])]},
            "outputs": outs,
            "zero_input_outputs_equal_constants": True,
        }
    return report


def _plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (list, tuple)):
        return [_plain(x) for x in o]
    if hasattr(o, "__dict__"):
        return {k: _plain(v) for k, v in vars(o).items()}
    return o


def _same_but_metadata(base: Path, final: Path) -> bool:
    """The populator re-packs the whole model with tflite-support's own (older) copy of the TFLite schema:
    check, with ai_edge_litert's schema, that all it changed is one appended buffer and the metadata entry."""
    from ai_edge_litert import schema_py_generated as s

    a = _plain(s.ModelT.InitFromPackedBuf(base.read_bytes(), 0))
    b = _plain(s.ModelT.InitFromPackedBuf(final.read_bytes(), 0))
    (entry,) = b["metadata"]
    ok = entry["name"] in ("TFLITE_METADATA", b"TFLITE_METADATA") and entry["buffer"] == len(b["buffers"]) - 1
    a["metadata"], b["metadata"] = None, None
    b["buffers"] = b["buffers"][:-1]
    assert ok and a == b, f"{final.name}: the populator changed more than the metadata"
    return True


def _dist_version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


# ============================================================================ step 2: metadata (tflite-support venv)
@contextlib.contextmanager
def pinned_clock(epoch: int):
    """zipfile stamps entries with time.localtime(time.time()): pin both for byte-reproducible files."""
    real, tz = time.time, os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    time.time = lambda: float(epoch)
    try:
        yield
    finally:
        time.time = real
        if tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = tz
        time.tzset()


def populate_ssd(model_buf: bytes, label_path: str) -> tuple[bytes, str]:
    """The object-detector writer's one-call API, as Google's docs show it for SSD models."""
    from tflite_support.metadata_writers import object_detector

    w = object_detector.MetadataWriter.create_for_inference(bytearray(model_buf), [127.5], [127.5], [label_path])
    return bytes(w.populate()), "object_detector.MetadataWriter.create_for_inference"


def populate_yolo_generic(model_buf: bytes, label_path: str) -> tuple[bytes, str]:
    """The generic writer with metadata_info containers: an image input and one plain feature output that
    carries the label file (LabelFileMd: TENSOR_AXIS_LABELS). It does not look at the output's shape."""
    from tensorflow_lite_support.metadata.python.metadata_writers import metadata_writer  # not re-exported
    from tflite_support import metadata_schema_py_generated as mfb
    from tflite_support.metadata_writers import metadata_info, writer_utils

    general = metadata_info.GeneralMd(name="yolo_float_m1p1", version="1",
                                      description="Tiny YOLO-style detector (qharness test fixture).")
    inp = metadata_info.InputImageTensorMd(
        name="image", description="Input image, RGB, normalised (x - 127.5) / 127.5.",
        norm_mean=[127.5], norm_std=[127.5], color_space_type=mfb.ColorSpaceType.RGB,
        tensor_type=writer_utils.get_input_tensor_types(bytearray(model_buf))[0])
    out = metadata_info.TensorMd(
        name="output0", description="YOLO head [1, 4 + nc, anchors]: cx, cy, w, h in pixels, then class scores.",
        associated_files=[metadata_info.LabelFileMd(file_path=label_path)])
    w = metadata_writer.MetadataWriter.create_from_metadata_info(
        bytearray(model_buf), general_md=general, input_md=[inp], output_md=[out], associated_files=[label_path])
    return bytes(w.populate()), "metadata_writer.MetadataWriter.create_from_metadata_info (metadata_info.TensorMd)"


def populate_yolo_lowlevel(model_buf: bytes, label_path: str) -> tuple[bytes, str]:
    """A hand-built ModelMetadataT (tflite-support's generated schema classes) through MetadataPopulator."""
    import flatbuffers
    from tflite_support import metadata as md
    from tflite_support import metadata_schema_py_generated as mfb

    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    image = mfb.TensorMetadataT()
    image.name = "image"
    image.description = "Input image, RGB, per-channel ImageNet normalisation."
    image.content = mfb.ContentT()
    image.content.contentPropertiesType = mfb.ContentProperties.ImageProperties
    image.content.contentProperties = mfb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = mfb.ColorSpaceType.RGB
    norm = mfb.ProcessUnitT()
    norm.optionsType = mfb.ProcessUnitOptions.NormalizationOptions
    norm.options = mfb.NormalizationOptionsT()
    norm.options.mean, norm.options.std = mean, std
    image.processUnits = [norm]
    image.stats = mfb.StatsT()
    image.stats.min = [(0.0 - m) / s for m, s in zip(mean, std, strict=True)]
    image.stats.max = [(255.0 - m) / s for m, s in zip(mean, std, strict=True)]

    labels = mfb.AssociatedFileT()
    labels.name = os.path.basename(label_path)
    labels.description = "Labels for the class rows of output0 (row 4 + i is class i)."
    labels.type = mfb.AssociatedFileType.TENSOR_AXIS_LABELS
    head = mfb.TensorMetadataT()
    head.name = "output0"
    head.description = "YOLO head [1, 4 + nc, anchors]: cx, cy, w, h in pixels, then class scores."
    head.content = mfb.ContentT()
    head.content.contentPropertiesType = mfb.ContentProperties.FeatureProperties
    head.content.contentProperties = mfb.FeaturePropertiesT()
    head.associatedFiles = [labels]

    sub = mfb.SubGraphMetadataT()
    sub.inputTensorMetadata, sub.outputTensorMetadata = [image], [head]
    meta = mfb.ModelMetadataT()
    meta.name, meta.version = "yolo_float_imagenet", "1"
    meta.description = "Tiny YOLO-style detector (qharness test fixture)."
    meta.subgraphMetadata = [sub]
    b = flatbuffers.Builder(0)
    b.Finish(meta.Pack(b), md.MetadataPopulator.METADATA_FILE_IDENTIFIER)

    pop = md.MetadataPopulator.with_model_buffer(bytearray(model_buf))
    pop.load_metadata_buffer(b.Output())
    pop.load_associated_files([label_path])
    pop.populate()
    return bytes(pop.get_model_buffer()), "metadata.MetadataPopulator with a hand-built metadata_schema ModelMetadataT"


POPULATE = {"ssd_uint8_m1p1": populate_ssd, "yolo_float_m1p1": populate_yolo_generic,
            "yolo_float_imagenet": populate_yolo_lowlevel}


def reference_report(model_path: Path) -> dict:
    """What tflite-support's own reader says about a model (plus its view of the container layout)."""
    import zipfile

    from tensorflow_lite_support.metadata import schema_py_generated as sfb
    from tflite_support import metadata as md

    d = md.MetadataDisplayer.with_model_file(str(model_path))
    files = d.get_packed_associated_file_list()
    buf = model_path.read_bytes()
    m = sfb.Model.GetRootAsModel(buf, 0)
    entries = [{"name": m.Metadata(i).Name().decode(), "buffer": m.Metadata(i).Buffer()}
               for i in range(m.MetadataLength())]
    meta_buf = md.get_metadata_buffer(buf)
    with zipfile.ZipFile(model_path) as z:
        infos = [{"name": i.filename, "compress_type": i.compress_type, "file_size": i.file_size,
                  "header_offset": i.header_offset, "date_time": list(i.date_time)} for i in z.infolist()]
    first_local_header = buf.find(b"PK\x03\x04")
    return {
        "metadata_json": json.loads(d.get_metadata_json()),
        # The JSON printer writes floats with 6 significant digits (123.675003); these are the exact float32
        # values, through tflite-support's generated object API (ModelMetadataT), as Python floats.
        "input_float32_values": _input_floats(meta_buf),
        "packed_associated_file_list": files,
        "associated_files": {f: d.get_associated_file_buffer(f).decode("utf-8") for f in files},
        "layout": {
            "model_metadata_entries": entries,
            "metadata_buffer_bytes": len(meta_buf),
            "metadata_buffer_sha256": hashlib.sha256(meta_buf).hexdigest(),
            "metadata_file_identifier": meta_buf[4:8].decode(),
            "model_file_identifier": buf[4:8].decode(),
            "flatbuffer_bytes": first_local_header,
            "zip_entries": infos,
        },
    }


def task_library_detections(model_path: Path) -> list:
    """Google's C++ TFLite Task Library ObjectDetector (bundled in tflite-support) on a zero 64x64 RGB image:
    how Google's own runtime maps the category tensor through labelmap.txt and honours the count."""
    from tflite_support.task import core, processor, vision

    opts = vision.ObjectDetectorOptions(base_options=core.BaseOptions(file_name=str(model_path)),
                                        detection_options=processor.DetectionOptions(max_results=10))
    result = vision.ObjectDetector.create_from_options(opts).detect(
        vision.TensorImage.create_from_array(np.zeros((HW, HW, 3), np.uint8)))
    return [{"bounding_box_pixels": {"origin_x": d.bounding_box.origin_x, "origin_y": d.bounding_box.origin_y,
                                     "width": d.bounding_box.width, "height": d.bounding_box.height},
             "categories": [{"index": c.index, "score": c.score, "category_name": c.category_name,
                             "display_name": c.display_name} for c in d.categories]}
            for d in result.detections]


def _input_floats(meta_buf: bytes) -> list:
    from tflite_support import metadata_schema_py_generated as mfb

    meta = mfb.ModelMetadataT.InitFromObj(mfb.ModelMetadata.GetRootAsModelMetadata(meta_buf, 0))
    out = []
    for t in meta.subgraphMetadata[0].inputTensorMetadata:
        norm = [u.options for u in t.processUnits or []
                if u.optionsType == mfb.ProcessUnitOptions.NormalizationOptions]
        fl = lambda v: None if v is None else [float(x) for x in v]  # noqa: E731
        out.append({"name": t.name.decode() if isinstance(t.name, bytes) else t.name,
                    "normalization": [{"mean": fl(n.mean), "std": fl(n.std)} for n in norm],
                    "stats": None if t.stats is None else {"min": fl(t.stats.min), "max": fl(t.stats.max)}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--project-python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--write-base", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_base:
        return write_base(a.write_base)
    if a.check:
        print(json.dumps(check(a.check)))
        return None

    from importlib.metadata import version

    versions = {"python": sys.version.split()[0], **{k: version(k) for k in
                ("tflite-support", "flatbuffers", "numpy", "protobuf")}}
    assert versions["tflite-support"] == TFS_VERSION, versions
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, final = tmp / "base", tmp / "final"
        final.mkdir()
        me = str(Path(__file__).resolve())
        subprocess.run([a.project_python, me, "--write-base", str(base)], check=True, cwd=REPO)
        reports = {}
        for name, populate in POPULATE.items():
            fname, text = LABEL_FILES[name]
            label_path = tmp / "labels" / name / fname
            label_path.parent.mkdir(parents=True)
            label_path.write_bytes(text.encode())
            with pinned_clock(ZIP_EPOCH):
                buf, api = populate((base / f"{name}.tflite").read_bytes(), str(label_path))
            (final / f"{name}.tflite").write_bytes(buf)
            (final / f"{name}.base.json").write_bytes((base / f"{name}.base.json").read_bytes())
            (final / f"{name}.base.bin").write_bytes((base / f"{name}.tflite").read_bytes())
            ref = reference_report(final / f"{name}.tflite")
            if name.startswith("ssd"):
                ref["task_library_object_detector_on_zero_image"] = task_library_detections(final / f"{name}.tflite")
            reports[name] = (api, ref)
        run = subprocess.run([a.project_python, me, "--check", str(final)], check=True, cwd=REPO,
                             capture_output=True, text=True)
        checked = json.loads(run.stdout)
        for name, (api, ref) in reports.items():
            buf = (final / f"{name}.tflite").read_bytes()
            base_desc = json.loads((base / f"{name}.base.json").read_text())
            doc = {
                "file": f"{name}.tflite",
                "bytes": len(buf),
                "sha256": hashlib.sha256(buf).hexdigest(),
                "metadata_written_by": {"package": "tflite-support", "api": api, "versions": versions,
                                        "zip_time_pinned_to_utc": ZIP_EPOCH},
                # Everything under "tflite_support" is what tflite-support's reader reports:
                # MetadataDisplayer.with_model_file(path).get_metadata_json() (parsed),
                # .get_packed_associated_file_list(), .get_associated_file_buffer(name) (utf-8) and, under
                # "layout", the container as its schema module and zipfile see it.
                "tflite_support": ref,
                # The base model, as tests/tiny_models.py was asked to make it (not read by tflite-support).
                "base_model": {**base_desc, "outputs": [
                    {k: v for k, v in o.items() if k != "values"} | {"values_on_any_input": o["values"]}
                    for o in base_desc["outputs"]]},
                # ai_edge_litert's Interpreter (project venv): tensors and a run on a zero input.
                "ai_edge_litert": checked[name],
            }
            (a.out / f"{name}.tflite").write_bytes(buf)
            (a.out / f"{name}.expected.json").write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{name}.tflite  {len(buf)} bytes  {api}")


if __name__ == "__main__":
    main()
