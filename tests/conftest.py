"""Shared fixtures: generated shapes datasets (cached per session) and the committed models."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fixtures" / "models"


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory) -> Path:
    """A 40-image shapes dataset (seed 5): folder with images/ and annotations.json."""
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("shapes-small")
    generate(out, ShapesConfig(images=40, seed=5))
    return out


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def coco_like(tmp_path_factory) -> Path:
    """40 images shaped like COCO val2017 (seed 3): sparse 6-digit image ids out of order, crowd annotation
    ids near 9e11, the 80 COCO category ids (1..90 with gaps), 640-px photos (``shapes --coco-like``)."""
    from validator.datasets.shapes import ShapesConfig, generate

    out = tmp_path_factory.mktemp("coco-like")
    generate(out, ShapesConfig(images=40, seed=3, coco_like=True))
    return out
