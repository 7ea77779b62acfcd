"""A tiny labelled phantom dataset made by the real chain (threshold mask, overlay, CLAHE, 64 px)."""
from __future__ import annotations

import pytest
import torch
import yaml

from handprep.pipeline.config import load_config
from handprep.pipeline.runner import run_pipeline
from handprep.synth import write_phantom_set

torch.set_num_threads(1)  # tiny nets: extra threads only wait on each other on a busy 2-core machine

CHAIN = ["to_uint8", {"threshold_mask": {"work_size_px": 128}}, "overlay", {"clahe": {"clip_limit": 2.0}},
         {"resize": {"size_px": 64}}]


@pytest.fixture(scope="session")
def age_run(tmp_path_factory) -> dict:
    """16 phantoms (ages and sexes drawn by seed) through ``handprep run``: the packed dataset."""
    root = tmp_path_factory.mktemp("boneage")
    phantoms = write_phantom_set(root / "phantoms", n=16, seed=5, height=260, width=200)
    config = {"input": {"images": str(phantoms["images"]), "labels": str(phantoms["labels"])},
              "output": str(root / "run"), "workers": 1, "backend": "sequential", "stages": CHAIN}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = run_pipeline(load_config(root / "pipeline.yaml"), progress=False)
    assert summary.counts["ok"] == 16, summary.rows
    return {**phantoms, "run": root / "run", "root": root}


def tiny_config(age_run: dict, out, **overrides):
    """A small, fast network on 32 px input; no augmentation unless asked."""
    from handprep.boneage.train import TrainConfig

    base = dict(dataset=str(age_run["run"]), labels=str(age_run["labels"]), out=str(out), backbone="resnet18",
                hidden=32, dropout=0.0, size_px=32, epochs=10, batch_size=8, lr=3e-3, augment=False,
                split_fractions=(0.75, 0.25, 0.0), warmup_epochs=1, tta_views=3, ema_decay=0.8,
                checkpoint_every=3)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def trained(age_run, tmp_path_factory):
    """The tiny network trained for 10 epochs on 12 phantoms (4 validate); shared by the tests."""
    from handprep.boneage.train import train

    return train(tiny_config(age_run, tmp_path_factory.mktemp("trained")), progress=False, log=lambda *_: None)
