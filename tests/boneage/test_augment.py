"""Augmentation, test-time views and the learning-rate schedule."""
import math

import pytest
import torch

from handprep.boneage.augment import AugmentConfig, augment_batch
from handprep.boneage.infer import tta_views
from handprep.boneage.train import TrainConfig, _lr_factor


def _batch():
    x = torch.zeros(3, 1, 32, 32)
    x[:, :, 8:24, 10:22] = torch.linspace(0.2, 0.9, 3).view(3, 1, 1, 1)
    return x


def test_no_op_settings_return_the_image_and_background_stays_black():
    x = _batch()
    same = augment_batch(x, AugmentConfig(0, 0, 0, 0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    out = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert out[:, :, :2, :2].abs().max() < 1e-3  # corners were background and stay black
    assert 0 <= out.min() and out.max() <= 1


def test_random_draws_come_from_the_generator():
    x = _batch()
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(7))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_test_time_views_do_not_depend_on_the_batch():
    x = _batch()
    alone = tta_views(x[1:2], 4)
    together = tta_views(x, 4)
    assert len(together) == 4 and torch.equal(together[0], x)
    for v in range(4):
        torch.testing.assert_close(alone[v][0], together[v][1])


def test_warm_up_then_cosine_learning_rate():
    config = TrainConfig(dataset="d", labels="l", out="o", epochs=10, warmup_epochs=2, scheduler="cosine")
    assert _lr_factor(config, 0, 0, 4) == pytest.approx(1 / 8)  # linear in steps: (0 + 1/4) / 2
    assert _lr_factor(config, 1, 3, 4) == pytest.approx(1.0)
    assert _lr_factor(config, 2, 0, 4) == pytest.approx(1.0)
    assert _lr_factor(config, 6, 0, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert _lr_factor(config, 10, 0, 4) == pytest.approx(0.0, abs=1e-12)
    plateau = TrainConfig(dataset="d", labels="l", out="o", warmup_epochs=2)
    assert _lr_factor(plateau, 5, 0, 4) == 1.0  # after warm-up the plateau rule owns the rate
