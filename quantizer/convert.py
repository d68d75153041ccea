"""ONNX -> float32 TFLite with onnx2tf, in a virtual environment of its own, cached by the ONNX's sha256.

Why a separate environment: onnx2tf 1.29.24 pins every dependency exactly (TensorFlow 2.19.0,
ai-edge-litert 2.1.0, numpy 1.26.4, ...) while ai-edge-quantizer pins ai-edge-litert 2.3.0, so the two
cannot share one environment through pip's resolver; and TensorFlow (2.6 GB installed) has no place in
the core. The converter runs as a subprocess of that environment's Python. Set it up once:

    python -m quantizer.convert setup              # ~/.cache/qharness/onnx2tf-1.29.24 (2.6 GB, ~2 min)

or point ``QHARNESS_ONNX2TF`` at a Python (or a virtual environment) that has ``onnx2tf`` installed.

Nothing is downloaded at conversion time: onnx2tf fetches a sample-image file from GitHub for its own
output check whenever a model's inputs are all images; it looks in the working directory first, so the
conversion runs in a temporary folder holding a zero array under that file name.

A conversion is looked up before it is run: beside the source ONNX (``<stem>.<layout>.float32.tflite``
with its ``.json`` record, as the committed fixtures are) and in ``~/.cache/qharness/float-tflite``; the
key is the source ONNX's sha256, the layout and ``layout.LAYOUT_VERSION``. Every conversion is checked
against onnxruntime on a fixed random input (max error per output, recorded in the ``.json``).

End-to-end heads (YOLO26 one-to-one: a top-k selection in the graph): onnx2tf converts them, but its
TFLite from the Keras model then has no SignatureDef (its ``from_keras_model`` fails and it falls back to a
concrete function); the model is converted again from onnx2tf's SavedModel with the signature outputs named
as the ONNX outputs (``RESIGN_SCRIPT``, same TensorFlow, builtin ops only). Their rows are compared with
onnxruntime's up to the order of tied scores: on a random input the top-k of scores equal to ~1e-7 may come
out in another order (TensorFlow's TopK vs onnxruntime's), which moves a whole row.

Also a command: ``python -m quantizer.convert convert MODEL.onnx --layout split [--out F.tflite]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantizer.common import cache_dir, quiet_stderr, sha256_file

ONNX2TF_VERSION = "1.29.24"
SETUP_REQUIREMENTS = [f"onnx2tf=={ONNX2TF_VERSION}", "sng4onnx==2.0.1"]
LAYOUT_VERSION = 1  # bump when layout.py rewrites a graph differently: conversions made before are stale
SAMPLE_DATA = "calibration_image_sample_data_20x128x128x3_float32.npy"
RECORD_FORMAT = "qharness-float-tflite"
MAX_REL_ERROR = 1e-3  # conversion check: max |tflite - onnx| / max |onnx| per output
TIE_TOLERANCE = 1e-5  # end-to-end rows whose scores differ by less may come out in either order

# Run by the converter's Python: SavedModel (argv[1]) -> float TFLite (argv[2]) whose serving_default signature
# names its outputs argv[3] (a JSON list, the ONNX output names in order; onnx2tf's SavedModel calls them
# output_0, output_1, ...).
RESIGN_SCRIPT = """
import json, sys
import tensorflow as tf
src, dst, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = tf.saved_model.load(src)
f = m.signatures["serving_default"]
(key, spec), = f.structured_input_signature[1].items()
@tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=key)])
def serve(x):
    out = f(**{key: x})
    return {n: out[f"output_{i}"] for i, n in enumerate(names)}
c = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], m)
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
open(dst, "wb").write(c.convert())
"""


class ConverterMissing(RuntimeError):
    """No onnx2tf environment: the message says how to set one up."""


class ConversionError(RuntimeError):
    """onnx2tf failed or its model does not match the ONNX graph."""


@dataclass(frozen=True)
class FloatTFLite:
    path: Path
    record: dict  # the .json beside it


def default_venv() -> Path:
    return cache_dir(f"onnx2tf-{ONNX2TF_VERSION}")


def converter_python() -> Path | None:
    """The Python that runs onnx2tf: ``$QHARNESS_ONNX2TF`` (a python or a venv folder) or the default venv."""
    env = os.environ.get("QHARNESS_ONNX2TF")
    if env:
        p = Path(env)
        return p / "bin" / "python" if p.is_dir() else p
    p = default_venv() / "bin" / "python"
    return p if p.exists() else None


def setup_command() -> str:
    return "python -m quantizer.convert setup"


def setup(venv: Path | None = None, python: str = sys.executable) -> Path:
    """Create the converter environment (``python -m venv`` + ``pip install`` of the pinned onnx2tf)."""
    venv = Path(venv or default_venv())
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *SETUP_REQUIREMENTS], check=True)
    return py


def converter_versions(py: Path) -> dict:
    code = ("import json; from importlib.metadata import version as v; "
            "print(json.dumps({k: v(k) for k in ('onnx2tf', 'tensorflow', 'onnx')}))")
    try:
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        raise ConverterMissing(f"{py}: not a working onnx2tf environment ({str(e)[:120]}); "
                               f"run `{setup_command()}` or set QHARNESS_ONNX2TF") from None


# ------------------------------------------------------------------------------------------ lookup
def record_key(source_sha256: str, layout: str) -> dict:
    return {"source_sha256": source_sha256, "layout": layout, "layout_version": LAYOUT_VERSION}


def _matches(record_path: Path, key: dict) -> FloatTFLite | None:
    try:
        rec = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("format") != RECORD_FORMAT or any(rec.get(k) != v for k, v in key.items()):
        return None
    tfl = record_path.with_suffix(".tflite")
    if not tfl.is_file() or sha256_file(tfl) != rec.get("tflite_sha256"):
        return None
    return FloatTFLite(tfl, rec)


def find(source: Path, source_sha256: str, layout: str, cache: Path | None) -> FloatTFLite | None:
    """A conversion of this ONNX to this layout beside it or in the cache, checked by sha256."""
    key = record_key(source_sha256, layout)
    candidates = [source.parent / f"{source.stem}.{layout}.float32.json"]
    if cache is not None:
        candidates.append(cache / f"{source_sha256[:16]}.{layout}.float32.json")
    for c in candidates:
        if c.is_file():
            hit = _matches(c, key)
            if hit is not None:
                return hit
    return None


# ------------------------------------------------------------------------------------------ conversion
def _tflite_outputs(path: Path, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        it = Interpreter(model_path=str(path))
    runner = it.get_signature_runner()
    inp = next(iter(it.get_signature_list()["serving_default"]["inputs"]))
    return {k: np.asarray(v) for k, v in runner(**{inp: x_nhwc}).items()}


def check_against_onnx(model, tflite: Path, seed: int = 0, end2end: bool = False) -> dict:
    """Max abs and relative error per output, TFLite vs onnxruntime, on one fixed random input in [0,1).

    Outputs are paired by name (onnx2tf's signature keys are the ONNX output names); a TFLite output laid
    out NHWC is compared after moving its channels first. ``end2end``: the outputs are detection rows, compared
    after :func:`align_rows` (tied scores may come out of a top-k in either order)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    shape = [int(d) for d in i.shape]
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {i.name: x}), strict=True))
    got = _tflite_outputs(tflite, x.transpose(0, 2, 3, 1))
    shaped = {}
    for name, r in ref.items():
        if name not in got:
            raise ConversionError(f"{tflite}: no output named {name} (has {', '.join(got)})")
        g = got[name]
        if g.shape != r.shape and g.ndim == 4 and g.transpose(0, 3, 1, 2).shape == r.shape:
            g = g.transpose(0, 3, 1, 2)
        if g.shape != r.shape:
            raise ConversionError(f"{tflite}: output {name} has shape {list(g.shape)}, ONNX {list(r.shape)}")
        shaped[name] = g
    moved = 0
    if end2end:
        shaped, moved = align_rows(ref, shaped)
    out = {}
    for name, r in ref.items():
        g = shaped[name]
        err = float(np.abs(g.astype(np.float64) - r.astype(np.float64)).max())
        out[name] = {"max_abs_error": err, "max_rel_error": err / max(float(np.abs(r).max()), 1e-12),
                     "tflite_shape": [int(d) for d in got[name].shape]}
        if end2end:
            out[name]["rows_reordered_within_ties"] = moved
    return out


def _rows(outs: dict[str, np.ndarray]) -> np.ndarray:
    """End-to-end outputs as [K, C] rows: the one [1,K,C] tensor, or the split ones side by side (in order)."""
    return np.concatenate([np.asarray(v, np.float64).reshape(v.shape[1], -1) for v in outs.values()], axis=1)


def align_rows(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """``got``'s end-to-end rows reordered to match ``ref``'s where scores tie (within ``TIE_TOLERANCE``):
    each reference row takes the closest unused row of equal score. Returns the reordered outputs and how
    many rows moved. A row's score: column 4 of one ``[1,K,6]`` output (x1, y1, x2, y2, score, class), the
    largest class score of split boxes ``[1,K,4]`` + scores ``[1,K,nc]``."""
    a, b = _rows(ref), _rows({k: got[k] for k in ref})
    sa, sb = (r[:, 4] if len(ref) == 1 else r[:, 4:].max(axis=1) for r in (a, b))
    order = np.arange(len(a))
    used = np.zeros(len(b), bool)
    for i in range(len(a)):
        cand = np.flatnonzero((np.abs(sb - sa[i]) <= TIE_TOLERANCE) & ~used)
        if cand.size == 0:
            cand = np.flatnonzero(~used)
        j = cand[np.argmin(np.abs(b[cand] - a[i]).max(axis=1))]
        order[i], used[j] = j, True
    out = {k: np.take(v, order, axis=1) for k, v in got.items()}
    return out, int((order != np.arange(len(a))).sum())


def _has_signature(path: Path) -> bool:
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        return bool(Interpreter(model_path=str(path)).get_signature_list())


def convert(source: Path, layout: str, *, out: Path | None = None, cache: Path | None = None,
            log=None) -> FloatTFLite:
    """The float TFLite of ``source`` rewritten to ``layout``: found (see :func:`find`) or made now.

    ``out`` writes the result there (and its record beside it) instead of the cache."""
    import onnx

    from quantizer import layout as layouts
    from quantizer.emit_tflite import append_metadata

    source = Path(source)
    src_sha = sha256_file(source)
    cache = cache if cache is not None else cache_dir("float-tflite")
    if out is None:
        hit = find(source, src_sha, layout, cache)
        if hit is not None:
            return hit
    py = converter_python()
    if py is None or not py.exists():
        raise ConverterMissing(f"{source}: converting ONNX to TFLite needs onnx2tf {ONNX2TF_VERSION} (TensorFlow); "
                               f"run `{setup_command()}` once, set QHARNESS_ONNX2TF, or give --model a float .tflite")
    versions = converter_versions(py)
    model = layouts.apply(onnx.load(str(source)), layout)
    dest = Path(out) if out else cache / f"{src_sha[:16]}.{layout}.float32.tflite"
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if log:
        log(f"convert: {source.name} ({layout}) -> float TFLite with onnx2tf {versions.get('onnx2tf')} "
            f"(TensorFlow {versions.get('tensorflow')}); about a minute")
    with tempfile.TemporaryDirectory(prefix="qharness-onnx2tf-") as tmp:
        work = Path(tmp)
        onnx.save(model, str(work / "model.onnx"))
        np.save(work / SAMPLE_DATA, np.zeros((20, 128, 128, 3), np.float32))
        cmd = [str(py), "-m", "onnx2tf", "-i", "model.onnx", "-o", "out", "-v", "error"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        with open(work / "onnx2tf.log", "wb") as logf:
            rc = subprocess.run(cmd, cwd=work, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode
        made = work / "out" / "model_float32.tflite"
        if rc == 0 and made.is_file() and not _has_signature(made):  # end-to-end heads: see the module docstring
            names = json.dumps([o.name for o in model.graph.output])
            resigned = work / "out" / "model_float32.signed.tflite"
            with open(work / "onnx2tf.log", "ab") as logf:
                rc = subprocess.run([str(py), "-c", RESIGN_SCRIPT, str(work / "out"), str(resigned), names], cwd=work,
                                    stdout=logf, stderr=subprocess.STDOUT, env=env).returncode
            made = resigned
            cmd = [*cmd, "+ TFLiteConverter.from_concrete_functions(SavedModel, signature outputs " + names + ")"]
        if rc != 0 or not made.is_file():
            kept = Path(tempfile.mkstemp(prefix="qharness-onnx2tf-", suffix=".log")[1])
            shutil.copyfile(work / "onnx2tf.log", kept)
            tail = [ln for ln in (work / "onnx2tf.log").read_text(errors="replace").splitlines() if ln.strip()][-1:]
            raise ConversionError(f"{source}: onnx2tf failed (exit {rc}): {' '.join(tail)[:200]} (log: {kept})")
        check = check_against_onnx(model, made, end2end=layouts.is_end2end(model))
        bad = {k: v for k, v in check.items() if v["max_rel_error"] > MAX_REL_ERROR}
        if bad:
            raise ConversionError(f"{source}: onnx2tf's model differs from the ONNX graph: " + ", ".join(
                f"{k} max error {v['max_abs_error']:.3g}" for k, v in bad.items()))
        data = append_metadata(made.read_bytes(), layouts.metadata_dict(model))
    tmp_dest = dest.with_name(dest.name + ".tmp")
    tmp_dest.write_bytes(data)
    os.replace(tmp_dest, dest)
    record = {"format": RECORD_FORMAT, **record_key(src_sha, layout), "source": source.name,
              "tflite_sha256": sha256_file(dest), "converter": versions,
              "command": " ".join(["onnx2tf", *cmd[3:]]), "seconds": round(time.monotonic() - t0, 1),
              "check_vs_onnx": check}
    dest.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if log:
        log(f"convert: done in {record['seconds']:.0f} s, max relative error vs ONNX "
            f"{max(v['max_rel_error'] for v in check.values()):.1e}")
    return FloatTFLite(dest, record)


# ------------------------------------------------------------------------------------------ command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantizer.convert",
                                description="Set up the onnx2tf environment, or convert an ONNX model to float TFLite.")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("setup", help=f"create the onnx2tf {ONNX2TF_VERSION} environment (downloads ~1 GB from PyPI)")
    s.add_argument("--venv", type=Path, default=None, help=f"where (default {default_venv()})")
    c = sub.add_parser("convert", help="convert MODEL.onnx to float TFLite in a layout")
    c.add_argument("model", type=Path)
    c.add_argument("--layout", choices=["monolithic", "split"], default="split")
    c.add_argument("--out", type=Path, help="output .tflite (default: the cache)")
    args = p.parse_args(argv)
    if args.cmd == "setup":
        py = setup(args.venv)
        print(f"onnx2tf environment ready: {py}" + ("" if args.venv is None else f" (set QHARNESS_ONNX2TF={py})"))
        return 0
    if args.cmd == "convert":
        try:
            res = convert(args.model, args.layout, out=args.out, log=lambda m: print(m, file=sys.stderr))
        except (ConverterMissing, ConversionError) as e:
            print(f"convert: error: {e}", file=sys.stderr)
            return 2
        print(res.path)
        return 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
