"""Training on phantoms: learns, resumes, and reports bad training data clearly."""
import csv
import shutil

import numpy as np
import pytest

from handprep.io import write_mask
from handprep.segment.infer import Segmenter
from handprep.segment.metrics import dice
from handprep.segment.train import TrainConfig, TrainingDataError, load_pairs, split_ids, train
from handprep.synth import phantom


def test_phantom_training_reaches_high_dice(phantom_model, seg_phantoms):
    full = phantom_model.metrics["val_full_resolution"]
    assert full["dice"]["mean"] > 0.9, phantom_model.history
    history = phantom_model.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"epoch", "train_loss", "val_loss", "val_dice", "val_iou", "val_dice_hard"} <= set(history[0])
    # the saved model segments an unseen phantom
    segmenter = Segmenter(phantom_model.model_path, device="cpu")
    unseen = phantom(seed=999, height=260, width=200, border=False, marker=False)
    assert dice(segmenter.mask(unseen.image), unseen.mask) > 0.85
    meta = segmenter.meta
    assert meta["work_size_px"] == 128 and meta["tile_px"] == 64 and len(meta["mask_sha256"]) == 10
    assert set(meta["train_ids"]).isdisjoint(meta["val_ids"]) and len(meta["val_ids"]) == 2
    rows = list(csv.DictReader(open(phantom_model.model_path.parent / "val_metrics.csv")))
    assert [r["id"] for r in rows] == meta["val_ids"]


def test_split_is_deterministic_and_by_image():
    ids = [f"i{k}" for k in range(10)]
    train_a, val_a = split_ids(ids, 0.2, seed=3)
    train_b, val_b = split_ids(list(reversed(ids)), 0.2, seed=3)
    assert (train_a, val_a) == (train_b, val_b) and len(val_a) == 2 and not set(train_a) & set(val_a)


def test_resume_continues_the_same_run(seg_phantoms, tmp_path):
    base = dict(images=str(seg_phantoms["images"]), masks=str(seg_phantoms["masks"]), work_size_px=96,
                tile_px=64, stride_px=32, batch_size=16, patience=10, augment=True, device="cpu")
    straight = train(TrainConfig(out=str(tmp_path / "a"), epochs=3, **base), progress=False, log=lambda m: None)
    train(TrainConfig(out=str(tmp_path / "b"), epochs=2, **base), progress=False, log=lambda m: None)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), epochs=3, resume=True, **base), progress=False,
                    log=lambda m: None)
    assert len(resumed.history) == 3
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history)[:2] == strip(straight.history)[:2]
    assert resumed.history[2]["train_loss"] == pytest.approx(straight.history[2]["train_loss"], rel=1e-3)


def test_bad_pairs_are_skipped_with_reasons(seg_phantoms, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(seg_phantoms["images"], images)
    shutil.copytree(seg_phantoms["masks"], masks)
    ids = sorted(p.stem for p in images.glob("*.png"))
    write_mask(masks / f"{ids[0]}.png", np.zeros((100, 80), np.uint8))  # wrong size
    write_mask(masks / f"{ids[1]}.png", np.zeros((260, 200), np.uint8))  # empty
    write_mask(masks / "orphan.png", np.zeros((260, 200), np.uint8))  # no image
    (images / f"{ids[2]}.png").write_bytes(b"broken")
    pairs, problems = load_pairs(images, masks, 96, progress=False)
    assert len(pairs) == len(ids) - 3
    text = "\n".join(problems.values())
    assert "is 80×100 px but image" in text and "is empty (no hand)" in text
    assert "no image named orphan" in text and "not a readable image" in text
    with pytest.raises(TrainingDataError, match="no masks"):
        train(TrainConfig(images=str(images), masks=str(tmp_path / "none"), out=str(tmp_path / "o")), progress=False)
