"""Compare Ultralytics' own ``val`` with ``validate --metric compat`` and ``--metric coco`` on one split.

Dev-only (needs Ultralytics + torch, AGPL: never a qharness dependency, never imported by it). Run with
the fixtures venv's python; ``validate`` may come from any other venv (e.g. one per commit to compare):

    /work/venvs/fx/bin/python tools/compare_ultralytics_val.py --data DIR --det det.onnx --seg seg.onnx \\
        [--validate PATH/bin/validate] [--yolo-config DIR] [--json out.json] [--work DIR]

Defaults: ``--validate`` from ``$QHARNESS_VALIDATE``, else ``validate`` beside this python, else on ``PATH``;
``--yolo-config`` (Ultralytics' settings dir) from ``$YOLO_CONFIG_DIR``, else ``datasets/fixture-work/yolo-config``
(git-ignored). Matplotlib's DejaVuSans is copied in as Ultralytics' fonts, so nothing is fetched.

Why: ``--metric compat`` promises numbers that line up with what Ultralytics ``val`` prints; this script
measures how well they do on real models. For each model it

1. writes an Ultralytics-format copy of the split (``images/`` symlinked, ``labels/*.txt`` from the COCO JSON
   with crowd annotations dropped; for segmentation the largest polygon of each annotation; ``data.yaml`` with
   the names in category order);
2. runs ``YOLO(onnx, task=...).val(...)`` offline at the model's input size, batch 1, conf 0.001, IoU 0.7;
3. runs ``validate --model ONNX --data DIR --metric compat`` and ``--metric coco`` (no cache);
4. prints a markdown table (values and differences in points, i.e. x 100) and writes it as JSON if asked,
   with the ``validate`` used and the qharness commit it runs (when its source is a git checkout).

The remaining known differences are listed in ``validator/metrics/compat.py``'s docstring.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from yolo_labels import write_labels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
YOLO_CONFIG_DIR = ROOT / "datasets" / "fixture-work" / "yolo-config"  # default; holds the fonts, so nothing is fetched
TASKS = {"det": "detect", "seg": "segment"}
# (row label, Ultralytics metrics attribute, our iou type, our summary key)
ROWS = [
    ("box mAP50", "box", "map50", "bbox", "mAP50"),
    ("box mAP50-95", "box", "map", "bbox", "mAP50_95"),
    ("box P", "box", "mp", "bbox", "mean_precision"),
    ("box R", "box", "mr", "bbox", "mean_recall"),
    ("mask mAP50", "seg", "map50", "segm", "mAP50"),
    ("mask mAP50-95", "seg", "map", "segm", "mAP50_95"),
    ("mask P", "seg", "mp", "segm", "mean_precision"),
    ("mask R", "seg", "mr", "segm", "mean_recall"),
]


def default_validate() -> Path | None:
    """``$QHARNESS_VALIDATE``, else ``validate`` beside the running python (same venv), else on ``PATH``."""
    if env := os.environ.get("QHARNESS_VALIDATE"):
        return Path(env)
    beside = Path(sys.executable).parent / "validate"
    if beside.is_file():
        return beside
    found = shutil.which("validate")
    return Path(found) if found else None


def offline_env(config_dir: Path) -> None:
    """Ultralytics must never reach for the network or write settings outside ``config_dir``.

    Its fonts (``Arial.ttf``, ``Arial.Unicode.ttf``) are copies of matplotlib's DejaVuSans, as in
    ``tests/fixtures/make_fixtures.py``; otherwise val tries a download. Must run before ``import ultralytics``.
    """
    import matplotlib

    (config_dir / "Ultralytics").mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dst = config_dir / "Ultralytics" / name
        if not dst.exists():
            shutil.copy(font, dst)
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(config_dir))


# ------------------------------------------------------------------------------------ Ultralytics split
def write_split(data: Path, out: Path, task: str) -> Path:
    """COCO split -> Ultralytics layout under ``out``; returns its data.yaml."""
    doc = write_labels(data, out / "images", out / "labels", task, multipart="largest")
    names = "".join(f"  {i}: {json.dumps(c['name'])}\n" for i, c in enumerate(doc["categories"]))
    yaml = out / "data.yaml"  # train is required by Ultralytics' checker; it is never used here
    yaml.write_text(f"path: {out}\ntrain: images\nval: images\nnames:\n{names}")
    return yaml


def model_imgsz(onnx_path: Path) -> list[int]:
    """(h, w) of the model's fixed input, as Ultralytics would take it from the export."""
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    h, w = (d.dim_value for d in dims[2:4])
    if not (h and w):
        raise SystemExit(f"{onnx_path}: input has no fixed height/width")
    return [h, w]


def ultralytics_val(onnx_path: Path, task: str, yaml: Path, imgsz: list[int], work: Path) -> dict:
    """Ultralytics' own numbers, as fractions: {'box': {...}, 'seg': {...}}."""
    from ultralytics import YOLO

    m = YOLO(str(onnx_path), task=task).val(
        data=str(yaml), imgsz=imgsz if imgsz[0] != imgsz[1] else imgsz[0], batch=1, plots=False, conf=0.001,
        iou=0.7, device="cpu", workers=0, project=str(work / "runs"), name=task, exist_ok=True, verbose=False,
    )  # fmt: skip
    parts = {"box": m.box} | ({"seg": m.seg} if task == "segment" else {})
    return {k: {a: float(getattr(v, a)) for a in ("map50", "map", "mp", "mr")} for k, v in parts.items()}


# ------------------------------------------------------------------------------------------- qharness
def ours(onnx_path: Path, data: Path, metric: str, out: Path, validate: Path) -> dict:
    """``validate`` on the original COCO split; returns its metrics per iou type (bbox, segm)."""
    cmd = [str(validate), "--model", str(onnx_path), "--data", str(data), "--metric", metric, "--out", str(out),
           "--no-cache", "--workers", "1", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return summary["models"][0]["metrics"]


def qharness_source(validate: Path) -> dict:
    """Which qharness ``validate`` runs: its interpreter (from the script's shebang), package dir and git commit.

    Best effort: fields it cannot tell are None (e.g. a wheel install has no commit).
    """
    info: dict = {"validate": str(validate), "package": None, "commit": None, "dirty": None}
    try:
        first = validate.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return info
    if not first.startswith("#!"):
        return info
    r = subprocess.run([*first[2:].split(), "-c", "import validator; print(validator.__file__)"],
                       capture_output=True, text=True, cwd=tempfile.gettempdir())  # fmt: skip
    if r.returncode != 0:
        return info
    pkg = Path(r.stdout.strip()).parent
    info["package"] = str(pkg)
    git = ["git", "-C", str(pkg)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        info["commit"] = head.stdout.strip()
        st = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "."],
                            capture_output=True, text=True)  # fmt: skip
        info["dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
    return info


# ---------------------------------------------------------------------------------------------- table
def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(100 * (a - b), 4)


def rows_for(name: str, task: str, ultra: dict, compat: dict, coco: dict) -> list[dict]:
    out = []
    for label, part, attr, iou_type, key in ROWS:
        if part not in ultra:
            continue
        u = ultra[part][attr]
        c = compat.get(iou_type, {}).get(key)
        k = coco.get(iou_type, {}).get(key)
        out.append({"model": name, "task": task, "metric": label, "ultralytics": u, "compat": c, "coco": k,
                    "compat_minus_ultralytics_pts": _delta(c, u),
                    "coco_minus_ultralytics_pts": _delta(k, u)})  # fmt: skip
    return out


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def markdown(rows: list[dict]) -> str:
    """Values in points (x 100); differences are ours - Ultralytics."""
    lines = ["| model | metric | Ultralytics val | compat | compat - val | coco | coco - val |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['metric']} | {_pts(r['ultralytics'])} | {_pts(r['compat'])} | "
            f"{_signed(r['compat_minus_ultralytics_pts'])} | {_pts(r['coco'])} | "
            f"{_signed(r['coco_minus_ultralytics_pts'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="qharness split: annotations.json + images/")
    p.add_argument("--det", type=Path, help="detection ONNX (Ultralytics export)")
    p.add_argument("--seg", type=Path, help="segmentation ONNX (Ultralytics export)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--work", type=Path, help="keep the Ultralytics split and all runs here (default: temp dir)")
    validate_help = "qharness CLI (default: $QHARNESS_VALIDATE, else validate beside this python, else on PATH)"
    p.add_argument("--validate", type=Path, default=default_validate(), help=validate_help)
    cfg_help = f"Ultralytics settings dir (default: $YOLO_CONFIG_DIR, else {YOLO_CONFIG_DIR.relative_to(ROOT)})"
    p.add_argument("--yolo-config", type=Path, default=Path(os.environ.get("YOLO_CONFIG_DIR") or YOLO_CONFIG_DIR),
                   help=cfg_help)  # fmt: skip
    args = p.parse_args(argv)
    models = [(TASKS[k], getattr(args, k).resolve()) for k in TASKS if getattr(args, k)]
    if not models:
        p.error("give --det and/or --seg")
    for _, onnx_path in models:
        if not onnx_path.is_file():
            p.error(f"{onnx_path}: no such model")
    data = args.data.resolve()
    if not (data / "annotations.json").is_file():
        p.error(f"{data}: no annotations.json")
    if args.validate is None:
        p.error("no validate found: give --validate or set QHARNESS_VALIDATE")
    validate = args.validate.absolute()  # not resolved: a venv's bin/ may hold symlinks
    if not (validate.is_file() and os.access(validate, os.X_OK)):
        p.error(f"{validate}: not an executable file")  # checked before minutes of Ultralytics val
    source = qharness_source(validate)
    offline_env(args.yolo_config.resolve())
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: keep the comparison modest
    from ultralytics import __version__ as ultralytics_version

    tmp = None if args.work else tempfile.mkdtemp(prefix="cmp-ultra-")
    work = (args.work or Path(tmp)).resolve()
    try:
        rows, per_model = [], []
        for task, onnx_path in models:
            w = work / task
            yaml = write_split(data, w / "yolo", task)
            imgsz = model_imgsz(onnx_path)
            ultra = ultralytics_val(onnx_path, task, yaml, imgsz, w)
            compat = ours(onnx_path, data, "compat", w / "ours-compat", validate)
            coco = ours(onnx_path, data, "coco", w / "ours-coco", validate)
            model_rows = rows_for(onnx_path.name, task, ultra, compat, coco)
            rows += model_rows
            per_model.append({"model": str(onnx_path), "task": task, "imgsz": imgsz, "rows": model_rows})
        table = markdown(rows)
        commit = (source["commit"] or "?")[:7] + ("+dirty" if source["dirty"] else "")
        print(f"\nUltralytics {ultralytics_version} val vs qharness {commit} ({validate}) on {data} "
              "(points; differences ours - val)\n")  # fmt: skip
        print(table)
        if args.json:
            doc = {"data": str(data), "ultralytics": ultralytics_version, "torch": torch.__version__,
                   "qharness": source, "unit": "fractions; *_pts in points", "models": per_model}  # fmt: skip
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
