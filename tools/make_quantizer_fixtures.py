"""Make the float TFLite fixtures the quantizer's tests, demo and benchmark use (no TensorFlow needed there).

Each is the committed YOLOv8n fixture ONNX rewritten to an output layout and converted by the quantizer's
own conversion path (``quantizer.convert``: onnx2tf 1.29.24 / TensorFlow 2.19.0 in their own environment),
with the record ``quantize`` looks for beside the ONNX (``<stem>.<layout>.float32.json``: source sha256,
layout, converter versions, max error vs onnxruntime):

* ``shapes-{det,seg}.{monolithic,split}.float32.tflite`` -- 256 px, from ``shapes-{det,seg}.onnx`` (rerunning
  gives byte-identical files: onnx2tf is deterministic, the convert tests check it);
* ``shapes-det-640.split.float32.tflite`` -- the det fixture exported again at 640 px (benchmarks/quantize.py
  measures calibration memory there). No .pt checkpoint is committed, so the trained weights are read back
  from ``shapes-det.onnx`` into an Ultralytics YOLOv8n (BN already fused into the convolutions in the
  export; the fused model's parameter names are the ONNX initializer names) and exported at imgsz 640 with
  Ultralytics 8.4.190 (``--ultralytics-python``: a Python with torch + ultralytics, e.g. the fixtures venv).
  The same weights exported again at 256 px must give the committed ONNX's outputs (they do, exactly); the
  640 ONNX is then converted. It is not committed (12 MB): the TFLite and its record are.

Commands (as run for the committed files; QHARNESS_ONNX2TF points at an onnx2tf environment made by
``python -m quantizer.convert setup``)::

    QHARNESS_ONNX2TF=/work/venvs/onnx2tf .venv/bin/python tools/make_quantizer_fixtures.py
    QHARNESS_ONNX2TF=/work/venvs/onnx2tf .venv/bin/python tools/make_quantizer_fixtures.py \\
        --only 640 --ultralytics-python /work/venvs/fx/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "tests" / "fixtures" / "models"

EXPORT = r"""
import ast, shutil, sys, onnx, torch
from onnx import numpy_helper
from ultralytics.engine.exporter import Exporter
from ultralytics.nn.tasks import DetectionModel
src, out_dir = sys.argv[1], sys.argv[2]
m = onnx.load(src)
names = ast.literal_eval(next(p.value for p in m.metadata_props if p.key == "names"))
weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
model.fuse(verbose=False)  # the export's convolutions carry the batch-norm folded in
model.load_state_dict(weights, strict=True)  # every parameter by its name, none left over
model.names, model.task = names, "detect"
model.args = {"imgsz": 256, "task": "detect", "data": None}
model.eval()
for size in (256, 640):
    exp = Exporter(overrides={"format": "onnx", "imgsz": size, "opset": 17, "simplify": True, "batch": 1,
                              "device": "cpu"})
    shutil.move(exp(model=model), f"{out_dir}/det-{size}.onnx")
"""


def export_640(py: str, src: Path, out_dir: Path) -> Path:
    """The det fixture's weights exported at 640 px; checked by exporting them at 256 px too, which must give
    the committed ONNX's outputs exactly."""
    import numpy as np
    import onnxruntime as ort

    script = out_dir / "export.py"
    script.write_text(EXPORT)
    subprocess.run([py, str(script), str(src), str(out_dir)], check=True, cwd=out_dir,
                   env={"YOLO_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(out_dir)})
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    again = ort.InferenceSession(str(out_dir / "det-256.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]
    err = float(np.abs(ref - again).max())
    if err > 1e-3:
        raise SystemExit(f"re-export at 256 px differs from {src.name} by {err}: weights not read back right")
    print(f"weights read back from {src.name}: its re-export at 256 px matches it (max error {err:g})")
    dst = out_dir / "shapes-det-640.onnx"
    (out_dir / "det-640.onnx").rename(dst)
    return dst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["256", "640"], help="make only these fixtures")
    p.add_argument("--ultralytics-python", default="/work/venvs/fx/bin/python",
                   help="a Python with torch and ultralytics 8.4 (for the 640 export)")
    args = p.parse_args()
    from quantizer.convert import convert

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.only != "640":
        for stem in ("shapes-det", "shapes-seg"):
            for layout in ("monolithic", "split"):
                res = convert(MODELS / f"{stem}.onnx", layout, out=MODELS / f"{stem}.{layout}.float32.tflite", log=log)
                print(res.path.relative_to(REPO), res.record["check_vs_onnx"])
    if args.only != "256":
        with tempfile.TemporaryDirectory() as tmp:
            onnx640 = export_640(args.ultralytics_python, MODELS / "shapes-det.onnx", Path(tmp))
            res = convert(onnx640, "split", out=MODELS / "shapes-det-640.split.float32.tflite", log=log)
            print(res.path.relative_to(REPO), res.record["check_vs_onnx"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
