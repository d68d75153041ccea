"""quantizer.manifest: variant manifests and variants.json (plain JSON: what the validator reads)."""

from __future__ import annotations

import json

import pytest

from quantizer.manifest import (
    INDEX_FORMAT,
    INDEX_NAME,
    REQUIRED,
    VARIANT_FORMAT,
    load_index,
    write_index,
    write_variant,
)


def entry(name: str) -> dict:
    e = {k: None for k in REQUIRED}
    e.update({"name": name, "path": f"{name}.tflite", "sha256": "0" * 64, "model_format": "tflite",
              "precision": "int8", "strategy": {"name": "minmax", "params": {}, "spec": "minmax"}, "samples": 4,
              "granularity": "channel", "layout": "split", "io": {}, "tools": {}, "check": {"outputs": []},
              "calibration": {"images": ["a.jpg"], "list_sha256": "1" * 64, "count": 1},
              "float_model": {"path": "/m.onnx", "sha256": "2" * 64}, "parent_model": {}})
    return e


def test_variant_manifest_is_written_beside_the_model(tmp_path):
    p = write_variant(tmp_path, entry("v1"))
    assert p == tmp_path / "v1.tflite.json"
    doc = json.loads(p.read_text())
    assert doc["format"] == VARIANT_FORMAT and doc["version"] == 1 and doc["name"] == "v1"


def test_a_manifest_missing_a_required_field_is_refused(tmp_path):
    e = entry("v1")
    del e["calibration"]
    with pytest.raises(ValueError, match="calibration"):
        write_variant(tmp_path, e)


def test_index_lists_variants_and_removes_what_an_earlier_run_listed(tmp_path):
    for name in ("old", "kept"):
        (tmp_path / f"{name}.tflite").write_bytes(b"x")
        write_variant(tmp_path, entry(name))
    (tmp_path / "users-file.tflite").write_bytes(b"mine")
    write_index(tmp_path, [entry("old"), entry("kept")], {"path": "/m.onnx"}, {}, {"name": "quantize"})
    idx = write_index(tmp_path, [entry("kept")], {"path": "/m.onnx", "sha256": "2" * 64}, {"source": "/c"},
                      {"name": "quantize"})
    assert idx == tmp_path / INDEX_NAME
    doc = load_index(idx)
    assert doc["format"] == INDEX_FORMAT and [v["name"] for v in doc["variants"]] == ["kept"]
    assert doc["variants"][0]["format"] == VARIANT_FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.tflite", "kept.tflite.json", "users-file.tflite",
                                                          INDEX_NAME]


def test_index_never_deletes_outside_its_folder(tmp_path):
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"x")
    d = tmp_path / "out"
    d.mkdir()
    (d / INDEX_NAME).write_text(json.dumps({"format": INDEX_FORMAT, "variants": [{"path": "../outside.tflite"}]}))
    write_index(d, [], {}, {}, {})
    assert outside.exists()


@pytest.mark.parametrize("content", ["{", "[]", json.dumps({"format": "other", "variants": []})])
def test_load_index_rejects_other_files(tmp_path, content):
    p = tmp_path / INDEX_NAME
    p.write_text(content)
    assert load_index(p) is None
