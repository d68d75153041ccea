"""Models run side by side (one thread each, validator.inference.run_models) give exactly the detections
each model gives when it runs alone, in the same order: the schedule is invisible in the outputs."""

from __future__ import annotations

from validator.run import ModelSpec, Settings, validate


def test_models_side_by_side_equal_each_alone(shapes_small, models_dir, tmp_path):
    pair = models_dir / "shapes-seg.onnx", models_dir / "shapes-seg.int8.tflite"
    together = validate([ModelSpec(pair[0], "float"), ModelSpec(pair[1], "int8")], shapes_small, None,
                        tmp_path / "both", Settings(), workers=2, use_cache=False, quiet=True)
    assert {m["name"] for m in together.summary["models"]} == {"shapes-seg", "shapes-seg.int8"}
    for path, role in ((pair[0], "float"), (pair[1], "int8")):
        alone = validate([ModelSpec(path, role)], shapes_small, None, tmp_path / path.name, Settings(),
                         workers=1, threads=2, use_cache=False, quiet=True)
        name = alone.summary["models"][0]["name"]
        a = (tmp_path / path.name / "predictions" / f"{name}.json").read_bytes()
        b = (tmp_path / "both" / "predictions" / f"{name}.json").read_bytes()
        assert a.count(b"\n") > 50 and a == b, name
