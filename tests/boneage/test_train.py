"""Training on phantoms: it learns, resumes exactly, writes its outputs, checkpoints load safely."""
import csv
import json

import pytest
import torch

from handprep.boneage.model import load_model_file
from handprep.boneage.train import train
from tests.boneage.conftest import tiny_config


def test_overfitting_16_phantoms_halves_the_training_mae(trained):
    history = trained.history
    first = history[0]["train_mae"]
    last = min(r["train_mae"] for r in history[-3:])
    assert last < 0.5 * first, [r["train_mae"] for r in history]
    assert {"epoch", "lr", "train_loss", "train_mae", "val_mae", "val_mae_raw", "images", "seconds"} <= set(history[0])


def test_run_folder_holds_model_metrics_predictions_and_plots(trained, age_run):
    out = trained.out
    for name in ("model.pt", "last.pt", "history.csv", "split.csv", "metrics.json", "predictions.csv", "curves.png",
                 "scatter.png", "age_histogram.png", "model.json"):
        assert (out / name).is_file(), name
    split = list(csv.DictReader(open(out / "split.csv")))
    assert len(split) == 16 and {r["split"] for r in split} == {"train", "val"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scored_split"] == "val" and metrics["val"]["all"]["n"] == 4
    assert set(metrics["val"]["by_sex"]) == {"female", "male"} and "baseline_train_mean" in metrics["val"]
    predictions = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["id"] for r in predictions] == [r["id"] for r in split if r["split"] == "val"]
    assert all(float(r["lower"]) <= float(r["predicted"]) <= float(r["upper"]) for r in predictions)
    model, meta = load_model_file(out / "model.pt")
    assert meta["pipeline"]["stages"][-1] == {"resize": {"size_px": 64, "interpolation": "area"}}
    assert meta["size_px"] == 32 and meta["dataset_size_px"] == 64 and meta["interval"]["views"] == 3
    assert meta["metrics"]["mae"] == pytest.approx(metrics["val"]["all"]["mae"])
    assert json.dumps(meta)  # metadata is plain JSON


def test_checkpoints_load_with_weights_only(trained):
    state = torch.load(trained.out / "last.pt", weights_only=True)
    assert state["epoch"] == 10 and len(state["history"]) == 10 and state["ema"]["step"] > 0


def test_resumed_run_equals_an_uninterrupted_one(age_run, tmp_path):
    opts = dict(epochs=2, augment=True, age_bins=(0, 100, 300), extra_fraction=0.4, dropout=0.2, tta_views=1)
    whole = train(tiny_config(age_run, tmp_path / "whole", **opts), progress=False, log=lambda *_: None)
    train(tiny_config(age_run, tmp_path / "part", **{**opts, "epochs": 1}), progress=False, log=lambda *_: None)
    resumed = train(tiny_config(age_run, tmp_path / "part", **opts), resume=True, progress=False,
                    log=lambda *_: None)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in whole.history]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in resumed.history] == strip
    a = torch.load(whole.out / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed.out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_a_model_keeps_its_normalisation(trained, age_run, tmp_path):
    tuned = train(tiny_config(age_run, tmp_path / "tuned", epochs=1, init_from=str(trained.model_path)),
                  progress=False, log=lambda *_: None)
    _, old = load_model_file(trained.model_path)
    _, new = load_model_file(tuned.model_path)
    assert new["norm"] == old["norm"]
    with pytest.raises(Exception, match="differs from the one asked for"):
        train(tiny_config(age_run, tmp_path / "bad", epochs=1, hidden=16, init_from=str(trained.model_path)),
              progress=False, log=lambda *_: None)
