"""segment-eval on a split subset: model and baseline per image, gross failures, worst overlays; training
from a split file never reads the test masks."""
import csv
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from handprep.segment.evaluate import gross_failure
from handprep.segment.train import TrainConfig, TrainingDataError, read_split, train


def test_gross_failure_by_hand():
    true = np.zeros((20, 20), np.uint8)
    true[0:10, 0:10] = 255  # 100 px of hand
    pred = true.copy()
    pred[10, 0:6] = 255  # 6 px outside: 6 %
    assert gross_failure(pred, true) == pytest.approx((0.06, 0.0, True))
    pred = true.copy()
    pred[0, 0:4] = 0  # 4 px missing: 4 %, within the limit
    assert gross_failure(pred, true) == pytest.approx((0.0, 0.04, False))


@pytest.fixture
def split_file(seg_phantoms, tmp_path):
    ids = seg_phantoms["ids"]
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps({"train": ids[:6], "validation": ids[6:8], "test": ids[8:]}))
    return path


def test_eval_test_subset_with_baseline_and_overlays(phantom_model, seg_phantoms, split_file, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["segment-eval", "--images", str(seg_phantoms["images"]), "--masks",
                                      str(seg_phantoms["masks"]), "--split", str(split_file), "--subset", "test",
                                      "--model", str(phantom_model.model_path), "--out", str(out), "--worst", "1",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "segment_eval_test.csv")))
    assert [r["id"] for r in rows] == seg_phantoms["ids"][8:]
    assert all(float(r["dice"]) > 0.85 and float(r["baseline_dice"]) > 0.5 and float(r["hd95_diag"]) < 0.1
               for r in rows)
    summary = json.loads((out / "segment_eval_test.json").read_text())
    assert summary["model"]["images"] == 2 and summary["baseline"]["images"] == 2
    assert "test    model: Dice mean" in result.output and "baseline: Dice mean" in result.output
    assert len(list((out / "worst_test").glob("01_*.png"))) == 1


def test_training_from_a_split_never_reads_test_masks(seg_phantoms, split_file, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(seg_phantoms["masks"], masks)
    for case_id in read_split(split_file)["test"]:
        (masks / f"{case_id}.png").write_bytes(b"would fail to decode if it were ever read")
    result = train(TrainConfig(images=[str(seg_phantoms["images"])], masks=str(masks), out=str(tmp_path / "m"),
                               split=str(split_file), work_size_px=96, tile_px=64, stride_px=48, epochs=1,
                               augment=False, device="cpu"), progress=False, log=lambda m: None)
    assert result.skipped == {}
    meta = __import__("torch").load(result.model_path, weights_only=True)["meta"]
    assert meta["train_ids"] == sorted(seg_phantoms["ids"][:6]) and meta["val_ids"] == sorted(seg_phantoms["ids"][6:8])
    assert meta["test_ids_excluded"] == 2 and len(meta["split_sha256"]) == 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["a"], "validation": ["a"]}))
    with pytest.raises(TrainingDataError, match="id a is in both 'train' and 'validation'"):
        read_split(bad)


def test_several_image_folders_are_also_reported_apart(phantom_model, seg_phantoms, split_file, tmp_path):
    first, second = tmp_path / "rsna60", tmp_path / "raw"
    shutil.copytree(seg_phantoms["images"], first)
    second.mkdir()
    moved = seg_phantoms["ids"][9]
    shutil.move(next(first.glob(f"{moved}.*")), second)
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["segment-eval", "--images", str(first), "--images", str(second), "--masks",
                                      str(seg_phantoms["masks"]), "--split", str(split_file), "--model",
                                      str(phantom_model.model_path), "--out", str(out), "--worst", "0",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r["source"] for r in csv.DictReader(open(out / "segment_eval_test.csv"))}
    assert rows == {seg_phantoms["ids"][8]: str(first), moved: str(second)}
    summary = json.loads((out / "segment_eval_test.json").read_text())
    assert summary["model"]["images"] == 2
    assert {k: v["model"]["images"] for k, v in summary["by_source"].items()} == {str(first): 1, str(second): 1}
    assert f"test from {second}    model: Dice mean" in result.output
