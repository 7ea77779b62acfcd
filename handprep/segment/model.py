"""U-Net factory (segmentation_models_pytorch) and the model file format.

A model file is ``torch.save({"format": "handprep-segmenter", "version": 1, "meta": {...},
"state_dict": {...}})`` holding only tensors and plain values, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs). Weights are stored as float16
to keep the shipped model small; they are restored to float32 on load.
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from handprep.modelfile import load_checked, restore_weights, save_weights
from handprep.segment.files import (DEFAULT_MODEL, FORMAT, FORMAT_VERSION, ModelFileError,  # noqa: F401
                                    file_digest, require_model_file, resolve_model_path)

# Architecture presets: (encoder, encoder_depth, decoder_channels)
ARCHITECTURES = {
    "mobilenetv3_small": ("tu-mobilenetv3_small_100", 5, (128, 64, 32, 16, 8)),
    "efficientnet_lite0": ("tu-efficientnet_lite0", 5, (128, 64, 32, 16, 16)),
    "resnet18": ("resnet18", 5, (128, 64, 32, 16, 8)),
    "resnet34": ("resnet34", 5, (256, 128, 64, 32, 16)),  # the reference report's encoder
}


def build_unet(encoder: str = "tu-mobilenetv3_small_100", encoder_depth: int = 5,
               decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8),
               encoder_weights: str | None = None) -> nn.Module:
    """A 1-channel-in, 1-logit-out smp U-Net.

    ``encoder_weights``: None (random init, offline), ``"imagenet"`` (downloads: needs the
    internet), or a path to a ``.pt`` state dict for the encoder (offline ImageNet weights).
    """
    import segmentation_models_pytorch as smp

    local = encoder_weights if encoder_weights not in (None, "imagenet") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm/smp chatter about pretrained configs
        model = smp.Unet(encoder_name=encoder, encoder_weights=None if local else encoder_weights,
                         encoder_depth=encoder_depth, decoder_channels=tuple(decoder_channels),
                         in_channels=1, classes=1)
    if local:
        state = torch.load(local, map_location="cpu", weights_only=True)
        _load_encoder_weights(model.encoder, state, local)
    return model


def _strip(key: str) -> str:
    for prefix in ("encoder.", "model.", "module."):
        key = key.removeprefix(prefix)
    return key


def _load_encoder_weights(encoder: nn.Module, state: dict, path: str) -> None:
    """Load ImageNet encoder weights saved offline (a timm/torchvision state dict).

    Keys are matched without ``encoder.``/``model.`` prefixes; an RGB first convolution is
    summed over its colour channels to fit the 1-channel input.
    """
    own = encoder.state_dict()
    by_name = {_strip(k): k for k in own}
    adapted = {}
    for key, value in state.items():
        target = by_name.get(_strip(key))
        if target is None:
            continue
        if value.ndim == 4 and own[target].shape[1] == 1 and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        if own[target].shape == value.shape:
            adapted[target] = value
    if len(adapted) < len(own) // 2:
        raise ModelFileError(f"{path}: only {len(adapted)} of {len(own)} encoder tensors match; "
                             "is it a state dict for this encoder?")
    encoder.load_state_dict(adapted, strict=False)


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict) -> None:
    """Write a model file (float16 weights + metadata, with a JSON copy for torch-free checks)."""
    save_weights(path, model, meta, FORMAT, FORMAT_VERSION)


def read_model_file(path: str | os.PathLike) -> dict:
    """Load and check a model file (weights_only); raise ModelFileError with the fix."""
    path = require_model_file(path)
    data = load_checked(path, FORMAT, FORMAT_VERSION, ModelFileError,
                        f"not a handprep segmenter model (no '{FORMAT}' header); train one with "
                        "'handprep segment-train'")
    return data


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network from a model file; returns ``(model in eval mode, meta)``."""
    data = read_model_file(path)
    meta = data["meta"]
    model = build_unet(meta["encoder"], meta["encoder_depth"], tuple(meta["decoder_channels"]))
    restore_weights(model, data, path, ModelFileError, f"{meta['encoder']} U-Net")
    return model.to(device).eval(), meta


