"""validate --ray on a local Ray cluster started here (loopback only, 2 CPUs): byte-identical outputs to a
local run for det, seg and a 4-variant manifest; an actor killed mid-shard is survived with the same bytes;
an image that fails everywhere is one line and exit 2; without --ray nothing imports Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODELS
from validator.cli import main as validate

ray = pytest.importorskip("ray", reason='Ray not installed (pip install "qharness[ray]")')
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SAME = ("summary.json", "table.csv", "per_class.csv")


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def _run(args, out: Path, *extra) -> int:
    return validate([*map(str, args), "--out", str(out), "--quiet", "--no-cache", *extra])


def _no_timing(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if "loop wall" not in ln)


def _assert_identical(a: Path, b: Path) -> None:
    for f in SAME:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert _no_timing((a / "table.md").read_text()) == _no_timing((b / "table.md").read_text())
    preds = sorted(p.name for p in (a / "predictions").iterdir())
    assert preds == sorted(p.name for p in (b / "predictions").iterdir()) and preds
    for p in preds:
        assert (a / "predictions" / p).read_bytes() == (b / "predictions" / p).read_bytes(), p


@pytest.mark.parametrize("kind", ["det", "seg"])
def test_byte_identical_to_a_local_run(cluster, kind, shapes_small, tmp_path):
    args = ["--float", MODELS / f"shapes-{kind}.onnx", "--int8", MODELS / f"shapes-{kind}.int8.tflite",
            "--data", shapes_small]
    assert _run(args, tmp_path / "local") == 0
    assert _run(args, tmp_path / "ray", "--ray", "--ray-shard", "7") == 0  # 40 images: 6 shards, the last short
    _assert_identical(tmp_path / "local", tmp_path / "ray")
    ex = json.loads((tmp_path / "ray" / "timing.json").read_text())["execution"]["ray"]
    assert ex["shards"] == 6 and ex["actors"] >= 1 and ex["retries"] == 0


def test_a_four_variant_manifest(cluster, shapes_small, tmp_path):
    from validator.datasets.shapes import ShapesConfig, generate

    generate(tmp_path / "calib", ShapesConfig(images=8, seed=11))
    r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(MODELS / "shapes-det.onnx"),
                        "--calib", str(tmp_path / "calib"), "--samples", "8", "--strategy", "minmax,mse",
                        "--outputs", "split,monolithic", "--check-images", "0", "--out", str(tmp_path / "v"),
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads((tmp_path / "v" / "variants.json").read_text())["variants"]) == 4
    args = ["--float", MODELS / "shapes-det.onnx", "--manifest", tmp_path / "v" / "variants.json",
            "--data", shapes_small, "--limit", "24"]
    assert _run(args, tmp_path / "local") == 0
    assert _run(args, tmp_path / "ray", "--ray", "--ray-shard", "5", "--ray-workers", "2") == 0
    _assert_identical(tmp_path / "local", tmp_path / "ray")


def test_an_actor_killed_mid_shard_is_survived(cluster, shapes_small, tmp_path):
    args = ["--float", MODELS / "shapes-det.onnx", "--int8", MODELS / "shapes-det.int8.tflite",
            "--data", shapes_small, "--limit", "24"]
    assert _run(args, tmp_path / "local") == 0
    marker = tmp_path / "killed"
    ray.shutdown()  # the actors get the fault hook through the cluster's runtime environment
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"QHARNESS_RAY_FAULT": f"{marker}:12"}})
    assert _run(args, tmp_path / "ray", "--ray", "--ray-shard", "6") == 0
    assert marker.read_text() == "killed"  # the actor running images 12..17 died once
    ex = json.loads((tmp_path / "ray" / "timing.json").read_text())["execution"]["ray"]
    assert ex["retries"] >= 1
    _assert_identical(tmp_path / "local", tmp_path / "ray")


def test_an_image_that_fails_everywhere_is_one_line_and_exit_2(cluster, shapes_small, tmp_path, capsys):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(shapes_small, data)
    gt = json.loads((data / "annotations.json").read_text())
    bad = sorted(gt["images"], key=lambda im: im["id"])[9]["file_name"]
    (data / "images" / bad).write_bytes(b"not a jpeg")
    code = _run(["--float", MODELS / "shapes-det.onnx", "--data", data, "--limit", "16"], tmp_path / "o",
                "--ray", "--ray-shard", "4")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and bad in err, err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_without_ray_nothing_imports_it(tmp_path, shapes_small):
    code = ("import sys; from validator.cli import main; "
            f"rc = main(['--float', {str(MODELS / 'shapes-det.onnx')!r}, '--data', {str(shapes_small)!r}, "
            f"'--limit', '2', '--out', {str(tmp_path / 'o')!r}, '--quiet', '--no-cache']); "
            "sys.exit(3 if 'ray' in sys.modules else rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-2000:]


def test_quantize_statistics_on_ray_equal_local(cluster, tmp_path):
    """quantize --ray: the calibration statistics computed by shard on Ray actors are the local ones, array
    for array (the variants made from them are then the same bytes)."""
    from quantizer.calibration import Statistics
    from validator.datasets.shapes import ShapesConfig, generate

    generate(tmp_path / "calib", ShapesConfig(images=10, seed=11))

    def run(out: str, *extra) -> list:
        r = subprocess.run([sys.executable, "-m", "quantizer.cli", "--model", str(MODELS / "shapes-det.onnx"),
                            "--calib", str(tmp_path / "calib"), "--samples", "4,9", "--strategy", "minmax",
                            "--check-images", "0", "--out", str(tmp_path / out), "--stats-dir",
                            str(tmp_path / f"stats-{out}"), "--quiet", *extra], capture_output=True, text=True,
                           env={**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address})
        assert r.returncode == 0, r.stderr[-2000:]
        return sorted((tmp_path / f"stats-{out}").glob("*.npz"))

    local, shared = run("local"), run("ray", "--ray", "auto", "--ray-shard", "3")
    assert [p.name for p in local] == [p.name for p in shared] and len(local) == 2
    for a, b in zip(local, shared, strict=True):
        sa, sb = Statistics.load(a), Statistics.load(b)
        assert sa.names == sb.names
        for k in ("mins", "maxs", "hist"):
            np.testing.assert_array_equal(getattr(sa, k), getattr(sb, k))
    for name in ("shapes-det.split.minmax.n4.channel.int8.tflite", "shapes-det.split.minmax.n9.channel.int8.tflite"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()


def test_ctrl_c_stops_the_run_and_leaves_no_output_folder(tmp_path):
    """SIGINT to a `validate --ray` (its own local instance, loopback) while shards run: exit 130, the
    instance goes with the driver, and the output folder never appears."""
    import signal
    import time

    from validator.datasets.shapes import ShapesConfig, generate

    generate(tmp_path / "d", ShapesConfig(images=400, seed=4))  # 400 one-image shards: ~10 s here
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "validator.cli", "--float", str(MODELS / "shapes-det.onnx"),
                          "--data", str(tmp_path / "d"), "--out", str(out), "--no-cache", "--ray", "--ray-shard", "1"],
                         stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
                         env={**os.environ, "CI": "1"})
    t0 = time.monotonic()
    seen = ""
    while time.monotonic() - t0 < 120:  # the actors are up: the shards start now
        line = p.stderr.readline()
        seen += line
        if not line or "validate: ray:" in line:
            break
    assert "validate: ray:" in seen and p.poll() is None, seen[-2000:]
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=120)
    finally:
        p.kill()
    assert rc == 130 and "interrupted" in p.stderr.read()
    assert not out.exists()


def test_a_worker_that_cannot_read_the_data_names_itself_and_the_path(shapes_small, tmp_path):
    """What an actor checks before any image: every path it needs, readable where it runs (shared storage)."""
    import socket
    from dataclasses import asdict

    from validator.distributed import ShardRunner
    from validator.errors import InputError
    from validator.run import Settings

    missing = tmp_path / "not-mounted-here" / "annotations.json"
    job = {"data": str(missing), "images": None, "skip_missing": False, "settings": asdict(Settings()),
           "threads": 1, "models": [{"path": str(MODELS / "shapes-det.onnx"), "role": "float", "manifest": None,
                                     "name": "shapes-det"}]}
    with pytest.raises(InputError) as e:
        ShardRunner(job)
    assert f"worker {socket.gethostname()}" in str(e.value) and str(missing) in str(e.value)
    assert "shared storage" in str(e.value)


def test_an_unreachable_cluster_address_is_one_line_and_exit_2(shapes_small, tmp_path):
    """ray.init retries an address nobody answers for minutes; validate says so at once."""
    r = subprocess.run([sys.executable, "-m", "validator.cli", "--float", str(MODELS / "shapes-det.onnx"), "--data",
                        str(shapes_small), "--limit", "2", "--out", str(tmp_path / "o"), "--ray", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "cannot reach 127.0.0.1:1" in r.stderr
    assert not (tmp_path / "o").exists()
