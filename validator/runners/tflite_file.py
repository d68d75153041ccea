"""What a .tflite file says about itself without running it: metadata and numeric precision.

Three places hold metadata, and models in the wild use any of them:

* Ultralytics' LiteRT export appends a zip with ``metadata.json`` (names, imgsz, task, stride).
* TFLite metadata (what tflite-support's writers and the Task Library use): a ``ModelMetadata``
  flatbuffer (file identifier ``M001``) in the model's ``metadata`` entry ``TFLITE_METADATA``. Its input
  tensor may carry ``NormalizationOptions`` (mean/std per channel, ``(p - mean) / std``); output tensors
  (or the subgraph or model) may name associated files of type TENSOR_VALUE_LABELS / TENSOR_AXIS_LABELS:
  the label map, stored in a zip appended to the model under that name.
* Any ``*label*.txt`` in that zip (older converters).

The M001 schema (tensorflow/tflite-support ``metadata_schema.fbs``) is read with the plain flatbuffers
table API: only the handful of fields used here, by their vtable slot, so no tflite-support (which pins
protobuf < 4) is needed. Precision comes from the model's own tensors: activations (tensors without
constant data) in int8/uint8/int16 mean a fully quantized model; int8 weights with float activations a
dynamic-range one; float16 weights a float16 one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from validator.tensors import Precision

METADATA_NAME = "TFLITE_METADATA"
LABEL_FILE_TYPES = {2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS"}
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union tag


# ------------------------------------------------------------------------------------ M001 reader
class _T:
    """A flatbuffer table seen through vtable slots (slot k lives at vtable offset 4 + 2k)."""

    def __init__(self, buf: bytearray, pos: int):
        import flatbuffers

        self.tab = flatbuffers.table.Table(buf, pos)

    def _off(self, slot: int) -> int:
        return self.tab.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._off(slot)
        return self.tab.String(o + self.tab.Pos).decode("utf-8", "replace") if o else None

    def byte(self, slot: int, default: int = 0) -> int:
        import flatbuffers

        o = self._off(slot)
        return self.tab.Get(flatbuffers.number_types.Uint8Flags, o + self.tab.Pos) if o else default

    def table(self, slot: int) -> _T | None:
        o = self._off(slot)
        return _T(self.tab.Bytes, self.tab.Indirect(o + self.tab.Pos)) if o else None

    def tables(self, slot: int) -> list[_T]:
        o = self._off(slot)
        if not o:
            return []
        start, n = self.tab.Vector(o), self.tab.VectorLen(o)
        return [_T(self.tab.Bytes, self.tab.Indirect(start + 4 * i)) for i in range(n)]

    def floats(self, slot: int) -> list[float]:
        import flatbuffers

        o = self._off(slot)
        if not o:
            return []
        start, n = self.tab.Vector(o), self.tab.VectorLen(o)
        return [float(self.tab.Get(flatbuffers.number_types.Float32Flags, start + 4 * i)) for i in range(n)]


def _associated(t: _T, slot: int) -> list[dict]:
    return [{"name": f.string(0), "type": f.byte(2)} for f in t.tables(slot)]


def _normalization(tensor_md: _T) -> dict | None:
    for unit in tensor_md.tables(4):  # TensorMetadata.process_units
        if unit.byte(0) == NORMALIZATION_OPTIONS:  # ProcessUnit.options_type
            opts = unit.table(1)
            if opts is not None:
                return {"mean": opts.floats(0), "std": opts.floats(1)}
    return None


def parse_m001(data: bytes) -> dict:
    """The fields of a TFLite ``ModelMetadata`` flatbuffer this validator uses.

    Returns ``{"name", "input_normalization": {mean, std} | None, "label_files": [{"name", "type",
    "where"}]}`` with label files in priority order: output tensors first (in output order), then the
    subgraph's and the model's own associated files.
    """
    import flatbuffers

    buf = bytearray(data)
    root = _T(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    out = {"name": root.string(0), "input_normalization": None, "label_files": []}
    subgraphs = root.tables(3)  # ModelMetadata.subgraph_metadata
    files: list[dict] = []
    for sg in subgraphs[:1]:
        inputs = sg.tables(2)  # SubGraphMetadata.input_tensor_metadata
        if inputs:
            out["input_normalization"] = _normalization(inputs[0])
        for k, tmd in enumerate(sg.tables(3)):  # output_tensor_metadata
            files += [{**f, "where": f"output {k} ({tmd.string(0) or '?'})"} for f in _associated(tmd, 6)]
        files += [{**f, "where": "subgraph"} for f in _associated(sg, 4)]
    files += [{**f, "where": "model"} for f in _associated(root, 6)]
    out["label_files"] = [{**f, "type": LABEL_FILE_TYPES[f["type"]]} for f in files
                          if f["type"] in LABEL_FILE_TYPES and f["name"]]
    return out


# ------------------------------------------------------------------------------------ the file
def _model(data: bytes):
    from ai_edge_litert import schema_py_generated as s

    return s.Model.GetRootAs(data, 0)


def _buffer_bytes(model, data: bytes, index: int) -> bytes:
    b = model.Buffers(index)
    if b is None:
        return b""
    if b.Offset() > 1:  # large models keep buffers after the flatbuffer
        return data[b.Offset(): b.Offset() + b.Size()]
    return b.DataAsNumpy().tobytes() if b.DataLength() else b""


_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}


def precision(model, data: bytes) -> Precision:
    sg = model.Subgraphs(0)
    consts, acts = {}, {}
    edges = {int(sg.Inputs(k)) for k in range(sg.InputsLength())} | \
        {int(sg.Outputs(k)) for k in range(sg.OutputsLength())}
    inner_float = 0  # float activations inside the graph (not its inputs/outputs): ops left in float
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        dt = _TYPES.get(t.Type(), f"type{t.Type()}")
        b = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        is_const = b is not None and (b.DataLength() > 0 or b.Offset() > 1)
        d = consts if is_const else acts
        d[dt] = d.get(dt, 0) + 1
        inner_float += int(not is_const and dt in ("float32", "float16") and i not in edges)
    n_act = sum(acts.values())

    def share(d, keys):
        return sum(d.get(k, 0) for k in keys)

    q_act = share(acts, ("int8", "uint8", "int16"))
    if q_act:
        i16, i8 = acts.get("int16", 0), share(acts, ("int8", "uint8"))
        label = ("INT16x8" if i16 and not i8 else "INT8+INT16" if i16 else "INT8") + \
            (" mixed" if i16 and i8 and not inner_float else "+float mixed" if inner_float else "")
        return Precision(label, True, f"{q_act} of {n_act} activation tensors are "
                                      f"{'/'.join(k for k in ('int8', 'uint8', 'int16') if acts.get(k))}")
    if consts.get("int8", 0):
        return Precision("INT8 dynamic-range", True,
                         f"{consts['int8']} int8 weight tensors, float activations")
    if consts.get("float16", 0):
        return Precision("float16", False, f"{consts['float16']} float16 weight tensors, float activations")
    return Precision("float32", False, f"all {n_act} activation tensors float")


def _zip(path: Path) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None
    except (zipfile.BadZipFile, OSError):
        return None


def read_tflite_file(path: Path) -> dict:
    """Metadata and precision of a .tflite: ``{"names", "imgsz", "task", "stride", "source",
    "normalization", "label_file": {"name", "text", "where"} | None, "precision": Precision}``.

    Unreadable metadata is treated as absent (the model still runs); precision is always filled.
    """
    from validator.runners.base import normalize_metadata

    data = Path(path).read_bytes()
    model = _model(data)
    md = {"names": None, "imgsz": None, "task": None, "stride": None, "source": None}
    z = _zip(path)
    names = z.namelist() if z is not None else []
    if z is not None and "metadata.json" in names:
        try:
            md = normalize_metadata(json.loads(z.read("metadata.json")), "tflite metadata.json")
        except (ValueError, KeyError, zipfile.BadZipFile):
            pass
    md["normalization"] = None
    md["label_file"] = None
    m001 = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode() == METADATA_NAME:
            try:
                m001 = parse_m001(_buffer_bytes(model, data, entry.Buffer()))
            except Exception:  # a corrupt metadata blob must not stop a model that runs  # noqa: BLE001
                m001 = None
    if m001 is not None:
        if m001["input_normalization"] and m001["input_normalization"]["mean"]:
            md["normalization"] = {**m001["input_normalization"], "source": "TFLite metadata NormalizationOptions"}
        for f in m001["label_files"]:
            if f["name"] in names:
                text = z.read(f["name"]).decode("utf-8", "replace")
                md["label_file"] = {"name": f["name"], "text": text,
                                    "where": f"TFLite metadata {f['type']} file '{f['name']}' on {f['where']}"}
                break
    if md["label_file"] is None and z is not None:
        labels = sorted(n for n in names if n.lower().endswith(".txt") and "label" in n.lower())
        if labels:
            md["label_file"] = {"name": labels[0], "text": z.read(labels[0]).decode("utf-8", "replace"),
                                "where": f"file '{labels[0]}' appended to the model"}
    if z is not None:
        z.close()
    if md.get("source") is None and (md["normalization"] or md["label_file"]):
        md["source"] = "TFLite metadata"
    md["precision"] = precision(model, data)
    return md
