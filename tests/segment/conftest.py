"""A small U-Net trained on phantoms once per session (seconds on a CPU)."""
from __future__ import annotations

import pytest

from handprep.segment.train import TrainConfig, train
from handprep.synth import write_phantom_set


@pytest.fixture(scope="session")
def seg_phantoms(tmp_path_factory):
    return write_phantom_set(tmp_path_factory.mktemp("seg-phantoms"), n=10, seed=7, height=260, width=200,
                             border=False, marker=False)


@pytest.fixture(scope="session")
def phantom_model(seg_phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg-model")
    config = TrainConfig(images=str(seg_phantoms["images"]), masks=str(seg_phantoms["masks"]), out=str(out),
                         work_size_px=128, tile_px=64, stride_px=32, batch_size=16, epochs=8, patience=8,
                         augment=False, seed=0, device="cpu")
    result = train(config, progress=False, log=lambda m: None)
    return result
