"""Batched augmentation on the training device: rotation, translation, zoom (one affine warp
per image) and contrast. Also the mild, seeded views used for test-time augmentation."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 20.0
    translate: float = 0.08  # fraction of the image side
    zoom: float = 0.12  # scale drawn from [1 - zoom, 1 + zoom]
    contrast: float = 0.2  # gamma drawn from [1 - contrast, 1 + contrast] (keeps black black)

    def to_dict(self) -> dict:
        return asdict(self)


TTA_AUGMENT = AugmentConfig(rotation_deg=8.0, translate=0.04, zoom=0.06, contrast=0.0)


def _uniform(n: int, half_width: float, generator: torch.Generator, device) -> torch.Tensor:
    return ((torch.rand(n, generator=generator) * 2 - 1) * half_width).to(device)


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
                  same_for_all: bool = False) -> torch.Tensor:
    """``x`` B×1×H×W in [0, 1] → an augmented copy; random draws come from ``generator`` (CPU)
    so a run is reproducible on any device. Outside the image is black, like the masked background.
    ``same_for_all`` draws one warp for the whole batch (fixed test-time views)."""
    device = x.device
    n = 1 if same_for_all else x.shape[0]
    angle = _uniform(n, math.radians(config.rotation_deg), generator, device)
    scale = 1 + _uniform(n, config.zoom, generator, device)
    shift = torch.stack([_uniform(n, 2 * config.translate, generator, device),
                         _uniform(n, 2 * config.translate, generator, device)], dim=1)
    gamma = 1 + _uniform(n, config.contrast, generator, device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if config.contrast > 0:
        out = out.clamp(1e-6, 1) ** gamma.view(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1).to(x.dtype)
    return out
