"""Shared fixtures: phantom sets, pipeline YAML writer, and the real radiographs (skipped if absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from handprep.synth import write_phantom_set

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """HANDPREP_TEST_DATA, else ../shared/data/rsna60 beside the repository; None when absent."""
    env = os.environ.get("HANDPREP_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "rsna60")
    for folder in candidates:
        if (folder / "images").is_dir() and any((folder / "images").glob("*.png")):
            return folder
    return None


@pytest.fixture(scope="session")
def rsna60() -> Path:
    folder = real_data_dir()
    if folder is None:
        pytest.skip("real radiographs not found: set HANDPREP_TEST_DATA to a folder with images/ and labels.csv")
    return folder


@pytest.fixture(scope="session")
def raw_data() -> Path:
    """HANDPREP_RAW_DATA, else ../shared/data/rsna-raw (raw RSNA films); skipped when absent."""
    folder = Path(os.environ.get("HANDPREP_RAW_DATA", REPO.parent / "shared" / "data" / "rsna-raw"))
    if not (folder / "images").is_dir():
        pytest.skip("raw radiographs not found: set HANDPREP_RAW_DATA to a folder with images/ and labels.csv")
    return folder


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> dict:
    """Eight 8-bit phantoms (520×400) with masks and labels, written once per session."""
    return write_phantom_set(tmp_path_factory.mktemp("phantoms"), n=8, seed=1)


@pytest.fixture
def write_pipeline(tmp_path):
    """Write a pipeline YAML from a dict; returns its path."""

    def write(data: dict, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


REFERENCE_STAGES = [
    {"low_contrast": {"fraction_threshold": 0.05}},
    "to_uint8",
    {"fill_contours": {"threshold": 127}},
    {"dilate": {"kernel": 11, "iterations": 1}},
    "overlay",
    {"clahe": {"clip_limit": 3.0, "tile_grid": 8}},
    "sharpen",
    {"resize": {"size_px": 128}},
]
