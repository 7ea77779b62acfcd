"""The chain and the default segmenter on real RSNA radiographs.

Skipped when HANDPREP_TEST_DATA (or ../shared/data/rsna60) is absent.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from handprep.io import read_image, read_mask
from handprep.pipeline.config import load_config
from handprep.pipeline.runner import run_pipeline
from handprep.segment.infer import Segmenter
from handprep.segment.metrics import compare
from handprep.stages.mask import fill_contours
from tests.conftest import REPO

pytestmark = pytest.mark.realdata
MASKS = REPO / "masks"


def test_reads_all_sixty_including_palette_pngs(rsna60):
    paths = sorted((rsna60 / "images").glob("*.png"))
    assert len(paths) >= 60
    for path in paths:
        image = read_image(path)
        assert image.ndim == 2 and image.dtype == np.uint8 and image.shape == (2080, 1600)
        assert 0.3 < image.std() / 64 < 2  # a real radiograph, not a flattened palette


def test_every_real_image_has_a_reviewed_mask(rsna60):
    ids = {p.stem for p in (rsna60 / "images").glob("*.png")}
    assert ids <= {p.stem for p in MASKS.glob("*.png")}
    for case_id in sorted(ids)[:10]:
        mask = read_mask(MASKS / f"{case_id}.png")
        assert mask.shape == (2080, 1600) and 0.2 < (mask > 0).mean() < 0.7


def _check_dataset(out: Path, rsna60: Path, n: int) -> None:
    packed = np.load(out / "dataset" / "images.npy", mmap_mode="r")
    assert packed.shape == (n, 384, 384) and packed.dtype == np.uint8
    index = list(csv.DictReader(open(out / "dataset" / "index.csv")))
    labels = {r["id"]: r for r in csv.DictReader(open(rsna60 / "labels.csv"))}
    assert all(float(r["boneage"]) == float(labels[r["id"]]["boneage"]) for r in index)
    assert all(r["male"] == ("1" if labels[r["id"]]["male"] == "True" else "0") for r in index)
    # letterboxed portrait: 2080×1600 → 384×295 centred, 44 px of black each side
    assert {r["resize.pad_left"] for r in index} == {"44"}
    assert packed[:, :, :44].max() == 0 and packed[:, :, 340:].max() == 0
    hand = packed[:, :, 44:340]
    assert (hand > 0).mean() > 0.2 and hand.max() == 255


def test_reference_chain_with_masks_from_the_masks_folder(rsna60, tmp_path):
    config = load_config(REPO / "pipelines.yaml", images=rsna60 / "images", masks=MASKS,
                         labels=rsna60 / "labels.csv", output=tmp_path / "out", workers=2)
    stages = [s for s in config.stages if s.name != "segment"]  # the masks folder replaces the model
    config = dataclasses.replace(config, stages=tuple(stages))
    summary = run_pipeline(config, progress=False)
    assert summary.exit_code == 0 and summary.counts["ok"] == 60, [r["reason"] for r in summary.rows if r["reason"]]
    _check_dataset(Path(config.output), rsna60, 60)


def test_shipped_pipeline_segments_real_radiographs_end_to_end(rsna60, tmp_path):
    config = load_config(REPO / "pipelines.yaml", images=rsna60 / "images", labels=rsna60 / "labels.csv",
                         output=tmp_path / "out", workers=2)
    assert any(s.name == "segment" for s in config.stages)
    summary = run_pipeline(config, progress=False)
    assert summary.exit_code == 0 and summary.counts["ok"] == 60, [r["reason"] for r in summary.rows if r["reason"]]
    _check_dataset(Path(config.output), rsna60, 60)


def test_default_model_on_held_out_radiographs(rsna60):
    segmenter = Segmenter("default", device="cpu")
    assert not set(segmenter.meta["val_ids"]) & set(segmenter.meta["train_ids"])
    held_out = [i for i in segmenter.meta["val_ids"] if (rsna60 / "images" / f"{i}.png").is_file()]
    assert len(held_out) >= 10
    scores = []
    for case_id in held_out:
        image = read_image(rsna60 / "images" / f"{case_id}.png")
        pred = fill_contours(segmenter.mask(image), min_area_ratio=0.05)
        scores.append(compare(pred, read_mask(MASKS / f"{case_id}.png")))
    assert np.mean([s["dice"] for s in scores]) >= 0.98
    assert min(s["dice"] for s in scores) >= 0.95
