"""The regressor: a torchvision backbone on one grey channel, sex joined after global pooling,
two fully connected layers with dropout, one output (bone age, normalised; months outside).

Model files hold JSON-able metadata (preprocessing chain, input size, pixel and label
normalisation, interval calibration, metrics, versions) and float16 weights, and load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from handprep.modelfile import load_checked, restore_weights, save_weights

FORMAT, FORMAT_VERSION = "handprep-boneage", 1
BACKBONES = ("resnet18", "resnet34", "resnet50", "densenet121")
SEX_MODES = ("scalar", "onehot", "embedding")


class ModelFileError(ValueError):
    """A model or checkpoint file cannot be used (message names the file and the fix)."""


def _backbone(name: str) -> tuple[nn.Module, int]:
    """The feature extractor (1 input channel, global average pooled) and its feature width."""
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} is unknown; valid: {', '.join(BACKBONES)}")
    net = getattr(torchvision.models, name)(weights=None)  # offline: ImageNet weights only from a local file
    if name.startswith("resnet"):
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        width = net.fc.in_features
        net.fc = nn.Identity()
    else:
        net.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        width = net.classifier.in_features
        net.classifier = nn.Identity()
    return net, width


class SexInput(nn.Module):
    """Sex (male=1, female=0) as a scalar, a one-hot pair, or a learned 16-dim embedding → 32."""

    def __init__(self, mode: str):
        super().__init__()
        if mode not in SEX_MODES:
            raise ValueError(f"sex mode {mode!r} is unknown; valid: {', '.join(SEX_MODES)}")
        self.mode = mode
        if mode == "embedding":
            self.embed = nn.Embedding(2, 16)
            self.project = nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=True))
        self.width = {"scalar": 1, "onehot": 2, "embedding": 32}[mode]

    def forward(self, male: torch.Tensor) -> torch.Tensor:
        male = male.float().reshape(-1)
        if self.mode == "scalar":
            return male[:, None]
        if self.mode == "onehot":
            return torch.stack([1 - male, male], dim=1)
        return self.project(self.embed(male.round().long()))


class BoneAgeNet(nn.Module):
    def __init__(self, backbone: str = "resnet34", sex_mode: str = "scalar", hidden: int = 2048,
                 dropout: float = 0.5):
        super().__init__()
        self.backbone, width = _backbone(backbone)
        self.sex = SexInput(sex_mode)
        self.head = nn.Sequential(
            nn.Linear(width + self.sex.width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, image: torch.Tensor, male: torch.Tensor) -> torch.Tensor:
        """``image`` B×1×H×W (normalised pixels), ``male`` B (1/0) → B normalised ages."""
        features = self.backbone(image)
        return self.head(torch.cat([features, self.sex(male).to(features.dtype)], dim=1)).squeeze(1)


def build_model(arch: dict) -> BoneAgeNet:
    """``arch``: backbone, sex_mode, hidden, dropout (as stored in a model file)."""
    return BoneAgeNet(arch["backbone"], arch["sex_mode"], int(arch["hidden"]), float(arch["dropout"]))


def load_imagenet_backbone(model: BoneAgeNet, path: str | os.PathLike) -> int:
    """Load a local torchvision ImageNet state dict into the backbone (first conv summed over
    RGB to one channel; the classifier skipped). Returns the number of tensors loaded."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable state dict ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.backbone.state_dict()
    adapted = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in own and value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)  # RGB filters → one grey channel, same response to grey
        if key in own and own[key].shape == value.shape:
            adapted[key] = value
    if len(adapted) < len(own) // 2:
        raise ModelFileError(f"{path}: only {len(adapted)} of {len(own)} backbone tensors match; "
                             "is it a torchvision state dict for this backbone?")
    model.backbone.load_state_dict(adapted, strict=False)
    return len(adapted)


def save_model_file(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write weights (float16) + JSON-able ``meta`` atomically."""
    save_weights(path, model, meta, FORMAT, FORMAT_VERSION)


def read_model_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found; train one with 'handprep train-resnet34'")
    return load_checked(path, FORMAT, FORMAT_VERSION, ModelFileError,
                        f"not a handprep bone-age model (no '{FORMAT}' header); a training checkpoint "
                        "(last.pt) is resumed with --resume, not loaded as a model")


def load_model_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[BoneAgeNet, dict]:
    """Rebuild the regressor from a model file; returns ``(model in eval mode, meta)``."""
    data = read_model_file(path)
    meta = data["meta"]
    model = build_model(meta["arch"])
    restore_weights(model, data, path, ModelFileError, f"{meta['arch']} network")
    return model.to(device).eval(), meta
