"""The chain on real RSNA radiographs (skipped when HANDPREP_TEST_DATA / ../shared/data/rsna60 is absent)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from handprep.io import read_image, write_png
from handprep.pipeline.config import load_config
from handprep.pipeline.runner import run_pipeline
from handprep.stages.mask import threshold_mask
from tests.conftest import REPO

pytestmark = pytest.mark.realdata


def test_reads_all_sixty_including_palette_pngs(rsna60):
    paths = sorted((rsna60 / "images").glob("*.png"))
    assert len(paths) >= 60
    for path in paths:
        image = read_image(path)
        assert image.ndim == 2 and image.dtype == np.uint8 and image.shape == (2080, 1600)
        assert 0.3 < image.std() / 64 < 2  # a real radiograph, not a flattened palette


def test_reference_chain_with_masks_from_a_folder(rsna60, tmp_path):
    masks = tmp_path / "masks"
    for path in sorted((rsna60 / "images").glob("*.png")):
        write_png(masks / path.name, threshold_mask(read_image(path)))
    config = load_config(REPO / "pipelines.yaml", images=rsna60 / "images", masks=masks,
                         labels=rsna60 / "labels.csv", output=tmp_path / "out", workers=2)
    summary = run_pipeline(config, progress=False)
    assert summary.exit_code == 0 and summary.counts["ok"] == 60, summary.rows
    out = Path(config.output)
    packed = np.load(out / "dataset" / "images.npy", mmap_mode="r")
    assert packed.shape == (60, 384, 384) and packed.dtype == np.uint8
    index = list(csv.DictReader(open(out / "dataset" / "index.csv")))
    labels = {r["id"]: r for r in csv.DictReader(open(rsna60 / "labels.csv"))}
    assert [r["id"] for r in index] == sorted(labels)
    assert all(float(r["boneage"]) == float(labels[r["id"]]["boneage"]) for r in index)
    # letterboxed portrait: 2080×1600 → 384×295, 44 px of black each side
    assert {r["resize.pad_left"] for r in index} == {"44"}
    assert packed[:, :, :44].max() == 0 and packed[:, :, 340:].max() == 0
    # hand pixels present and contrast-enhanced
    hand = packed[:, :, 44:340]
    assert (hand > 0).mean() > 0.2 and hand.max() == 255
