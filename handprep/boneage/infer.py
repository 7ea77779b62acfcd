"""Preprocessed images (uint8, the dataset's size) → network input, and batched prediction in
months with optional test-time augmentation (fixed, seeded views: the same for every image,
so a prediction does not depend on what else is in the batch)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from handprep.boneage.augment import TTA_AUGMENT, AugmentConfig, augment_batch

TTA_SEED = 20_170_000


class RowView:
    """Rows of a (memory-mapped) array by a list of row numbers, read batch by batch."""

    def __init__(self, images: np.ndarray, rows: np.ndarray):
        self.images, self.rows = images, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        return np.asarray(self.images[self.rows[item]])


def to_unit(batch: torch.Tensor, size_px: int) -> torch.Tensor:
    """B×H×W uint8 → B×1×size×size float in [0, 1] (area-like antialiased resize when smaller)."""
    x = batch.float().div_(255).unsqueeze(1)
    if x.shape[-1] != size_px or x.shape[-2] != size_px:
        x = F.interpolate(x, size=(size_px, size_px), mode="bilinear", antialias=True, align_corners=False)
    return x


def normalise(x: torch.Tensor, norm: dict) -> torch.Tensor:
    return (x - norm["pixel_mean"]) / norm["pixel_std"]


def to_months(y: torch.Tensor | np.ndarray, norm: dict):
    return y * norm["label_std"] + norm["label_mean"]


def tta_views(x: torch.Tensor, views: int) -> list[torch.Tensor]:
    """View 0 is the image itself; view v > 0 is one seeded mild warp applied to the whole batch."""
    out = [x]
    for v in range(1, views):
        generator = torch.Generator().manual_seed(TTA_SEED + v)
        out.append(augment_batch(x, TTA_AUGMENT, generator, same_for_all=True))
    return out


@torch.no_grad()
def predict_months(model: torch.nn.Module, images: np.ndarray, male: np.ndarray, norm: dict, size_px: int,
                   device: torch.device, views: int = 1, batch_size: int = 32,
                   progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (over ``views``) of the predicted age in months per image.

    ``images`` N×H×W uint8 (may be memory-mapped); ``male`` N (1/0). Model in eval mode.
    """
    model.eval()
    means, stds = [], []
    use_amp = device.type == "cuda"
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start:start + batch_size], dtype=np.uint8)).to(device)
        sex = torch.from_numpy(np.asarray(male[start:start + batch_size], dtype=np.float32)).to(device)
        x = to_unit(batch, size_px)
        outputs = []
        for view in tta_views(x, max(1, views)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                outputs.append(model(normalise(view, norm), sex).float())
        months = to_months(torch.stack(outputs), norm)
        means.append(months.mean(0).cpu().numpy())
        stds.append(months.std(0, unbiased=False).cpu().numpy())
        if progress is not None:
            progress(len(batch))
    if not means:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(means).astype(np.float32), np.concatenate(stds).astype(np.float32)


__all__ = ["AugmentConfig", "RowView", "predict_months", "to_unit", "normalise", "to_months", "tta_views"]
