"""validate --diagnose on real quantizer variants: output-scale lint, op audit, layer-wise error, layer
sensitivity re-measured by validating the rebuilt model, class collapse, calibration overlap, the report.

The variants are made here by ``quantize`` from the det fixture (split and monolithic, min-max, 8 calibration
images of another seed): the monolithic one is the known bad control (pixel boxes and [0,1] scores under one
int8 scale), the split one the fix. Expected behaviour comes from that construction, not from this code's
earlier output: the monolithic output has fewer than 64 score levels, a model with one class's scores zeroed
has exactly that class collapsed, a model rebuilt with a layer kept in float has float ops, and the
sensitivity's score of a rebuilt model equals ``validate``'s own mAP of that model on the same images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS

pytestmark = pytest.mark.slow
DET = MODELS / "shapes-det.onnx"


def _validate(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "validator.cli", *map(str, args), "--quiet", "--no-cache"],
                       capture_output=True, text=True)
    if check:
        assert r.returncode in (0, 1), r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def diagnosed(shapes_small, tmp_path_factory) -> dict:
    from tests import report_data as rd

    out, variants = rd.diagnosed_run(tmp_path_factory, shapes_small)
    doc = json.loads((out / "diagnostics.json").read_text())
    by = {m["model"].split(".")[1]: m for m in doc["models"]}
    return {"doc": doc, "by": by, "out": out, "stdout": (out.parent / "stdout.txt").read_text(), "variants": variants}


def test_lint_warns_on_the_shared_scale_and_not_on_split(diagnosed):
    mono, split = diagnosed["by"]["monolithic"], diagnosed["by"]["split"]
    (row,) = mono["scale_lint"]["outputs"]
    assert set(row["roles"]) >= {"boxes", "scores"} and row["score_levels"] < 64
    assert [f for f in mono["scale_lint"]["findings"] if f["level"] == "warn"]
    scores = [o for o in split["scale_lint"]["outputs"] if o["roles"] == ["scores"]]
    assert scores and scores[0]["score_levels"] >= 64
    assert not [f for f in split["scale_lint"]["findings"] if f["level"] == "warn"]
    assert "WARNING" in diagnosed["stdout"] and "gives class scores 1 level in [0, 1]" in diagnosed["stdout"]
    # per-output error: the monolithic scores are destroyed, the split ones are not
    sq = {m: {o["role"]: o["sqnr_db"] for o in diagnosed["by"][m]["outputs"]} for m in ("monolithic", "split")}
    assert sq["split"]["scores"] > sq["monolithic"]["scores"] + 10


def test_layer_errors_follow_the_graph(diagnosed):
    for m in diagnosed["by"].values():
        lay = m["layers"]
        depths = [d for d, _ in lay["series"]]
        assert depths == sorted(depths) and lay["tensors"] == len(lay["series"]) > 100
        assert len(lay["worst"]) == 3 and all(w["drop_db"] is not None for w in lay["worst"])
        drops = [w["drop_db"] for w in lay["worst"]]
        assert drops == sorted(drops, reverse=True)


def _subset_dataset(src: Path, dest: Path, n_last: int) -> Path:
    gt = json.loads((src / "annotations.json").read_text())
    keep = gt["images"][-n_last:]
    ids = {i["id"] for i in keep}
    (dest / "images").mkdir(parents=True)
    for i in keep:
        shutil.copy(src / "images" / i["file_name"], dest / "images" / i["file_name"])
    gt = {**gt, "images": keep, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
    (dest / "annotations.json").write_text(json.dumps(gt))
    return dest


def test_sensitivity_re_measured_by_validate(diagnosed, shapes_small, tmp_path):
    """The top layer's win is real: the model rebuilt with it kept in float, validated on the same images by
    the CLI, scores what the sensitivity table says; its op audit shows the float ops."""
    from validator.diagnose import graph, layers

    m = diagnosed["by"]["monolithic"]
    sens = m["sensitivity"]
    wins = [r["win"] for r in sens["rows"] if r["win"] is not None]
    assert wins == sorted(wins, reverse=True) and len(sens["rows"]) == 3
    top = sens["rows"][0]
    manifest = json.loads((diagnosed["variants"] / f"{m['model']}.tflite.json").read_text())
    parent = Path(manifest["parent_model"]["path"]).read_bytes()
    model = Path(m["path"]).read_bytes()
    rng = tuple(manifest["calibration"]["input_range"])
    split = _subset_dataset(shapes_small, tmp_path / "split", 12)
    for rules, expected in (([], sens["baseline"]), (top["rules"], top["score"])):
        rebuilt = tmp_path / f"rebuilt{len(rules)}.tflite"
        rebuilt.write_bytes(layers.rebuild(parent, model, manifest["recipe"]["rules"], rules, rng))
        _validate("--float", DET, "--model", rebuilt, "--data", split, "--out", tmp_path / f"o{len(rules)}")
        got = json.loads((tmp_path / f"o{len(rules)}" / "summary.json").read_text())
        row = next(r for r in got["models"] if r["path"].endswith(rebuilt.name))
        assert ("+float mixed" in row["label"]) == bool(rules)  # a layer left in float shows in the row's label
        assert round(row["metrics"]["bbox"]["mAP50_95"] * 100, 4) == pytest.approx(expected, abs=1e-4)
        audit = graph.op_audit(rebuilt)
        if rules:
            assert audit["float"] >= 1 and not audit["fully_integer"]
            assert top["op"] in audit["float_ops"]
            assert audit["internal_dequantize"] >= 1
        else:
            assert audit["fully_integer"] and audit["float"] == 0
    if top["win"] > 0:
        assert f"keeping {top['op']} #{top['depth']} in float wins" in diagnosed["stdout"]


def _zero_class(src: Path, dest: Path, k: int) -> Path:
    """The det fixture with class ``k``'s score row multiplied by 0: one broken class, the rest untouched."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    out = m.graph.output[0]
    n_rows = out.type.tensor_type.shape.dim[1].dim_value
    gain = np.ones((1, n_rows, 1), np.float32)
    gain[0, 4 + k, 0] = 0.0
    raw = out.name + "_raw"
    for node in m.graph.node:
        node.output[:] = [raw if o == out.name else o for o in node.output]
    m.graph.initializer.append(numpy_helper.from_array(gain, "class_gain"))
    m.graph.node.append(helper.make_node("Mul", [raw, "class_gain"], [out.name]))
    onnx.checker.check_model(m)
    onnx.save(m, str(dest))
    return dest


def test_one_broken_class_is_flagged(shapes_small, tmp_path):
    broken = _zero_class(DET, tmp_path / "broken.onnx", k=2)
    r = _validate("--float", DET, "--model", broken, "--data", shapes_small, "--out", tmp_path / "o", "--diagnose",
                  "--diagnose-images", "2")
    doc = json.loads((tmp_path / "o" / "diagnostics.json").read_text())
    (m,) = doc["models"]
    gt = json.loads((shapes_small / "annotations.json").read_text())
    cat = gt["categories"][2]
    assert [(c["category_id"], c["kind"]) for c in m["collapse"]] == [(cat["id"], "collapsed to ~0")]
    h = m["collapse"][0]["score_histogram"]
    assert sum(h["reference"]) > 0 and sum(h["model"]) == 0
    assert f"CLASS COLLAPSE {cat['name']}" in r.stdout
    html = (tmp_path / "o" / "report.html").read_text()
    header = html[html.index('id="verdict"'):html.index("</header>")]
    assert 'class="alert"' in header and cat["name"] in header
    sec = html[html.index('<section id="diagnose"'):]
    assert "Collapsed classes of" in sec[:sec.index("</section>")]


def test_report_has_the_diagnosis_section(diagnosed):
    html = (diagnosed["out"] / "report.html").read_text()
    assert '<a href="#diagnose">' in html
    sec = html[html.index('<section id="diagnose"'):]
    sec = sec[:sec.index("</section>")]
    for what in ("Error types, boxes", "Per-output error", "Output-scale lint", "WARNING:", "Op audit",
                 "Layers adding most error", "Layer sensitivity", "layer-wise SQNR along the graph",
                 "Calibration overlap"):
        assert what in sec, what
    assert sec.count('<details class="dmodel"') == 2


def test_calibration_overlap_counts_by_content(shapes_small, tmp_path):
    """Calibration images evaluated again are counted by content: a same-named image of another folder is not
    one, a copy under another name is."""
    from validator.data.coco import load_dataset
    from validator.datasets.shapes import ShapesConfig, generate
    from validator.overlap import calibration_overlap as _overlap

    other = tmp_path / "other"
    generate(other, ShapesConfig(images=6, seed=99))
    names = sorted(p.name for p in (other / "images").iterdir())
    ds = load_dataset(shapes_small)
    evaluated = sorted(r.file_name for r in ds.images)
    assert set(names) <= {Path(n).name for n in evaluated}  # the same file names ...
    ov = _overlap({"calibration": {"images": names, "source": str(other)}}, ds)
    assert ov["evaluated_by_name"] == 6 and ov["evaluated_by_content"] == 0 and ov["evaluated"] == 0
    copies = tmp_path / "copies" / "images"  # ... and real copies of 3 evaluated images under new names
    copies.mkdir(parents=True)
    for i, n in enumerate(evaluated[:3]):
        shutil.copy(shapes_small / "images" / Path(n).name, copies / f"calib_{i}.jpg")
    ov = _overlap({"calibration": {"images": [f"calib_{i}.jpg" for i in range(3)], "source": str(copies.parent)}}, ds)
    assert ov["evaluated_by_name"] == 0 and ov["evaluated_by_content"] == 3 and ov["by"] == "content (sha256)"


def test_layer_errors_of_an_onnx_qdq_variant(shapes_small, tmp_path):
    """An ONNX QDQ variant's layer-wise error comes from onnxruntime's qdq_loss_debug against its float ONNX
    parent (named in the manifest); its SQNR falls along the graph from the exact input."""
    from validator.datasets.shapes import ShapesConfig, generate

    generate(tmp_path / "calib", ShapesConfig(images=8, seed=11))
    r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(DET), "--calib", str(tmp_path / "calib"),
                        "--samples", "8", "--strategy", "minmax", "--outputs", "split", "--format", "onnx",
                        "--check-images", "0", "--out", str(tmp_path / "v"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    _validate("--float", DET, "--manifest", tmp_path / "v" / "variants.json", "--data", shapes_small, "--limit", "8",
              "--out", tmp_path / "o", "--diagnose", "--diagnose-images", "2")
    (m,) = json.loads((tmp_path / "o" / "diagnostics.json").read_text())["models"]
    lay = m["layers"]
    assert lay["by"] == "onnxruntime.quantization.qdq_loss_debug" and lay["parent"].endswith(".float32.onnx")
    assert lay["tensors"] > 100 and [d for d, _ in lay["series"]] == sorted(d for d, _ in lay["series"])
    sq = [v for _, v in lay["series"] if v is not None]
    assert max(sq[:3]) > min(sq[-20:])  # error accumulates with depth
    assert lay["worst"] and all(w["drop_db"] is not None for w in lay["worst"])
    assert "TFLite" in m["sensitivity_skipped"]
