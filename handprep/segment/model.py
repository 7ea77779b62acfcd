"""U-Net factory (segmentation_models_pytorch) and the model file format.

A model file is ``torch.save({"format": "handprep-segmenter", "version": 1, "meta": {...},
"state_dict": {...}})`` holding only tensors and plain values, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs). Weights are stored as float16
to keep the shipped model small; they are restored to float32 on load.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from handprep.segment.files import (DEFAULT_MODEL, FORMAT, FORMAT_VERSION, META_ENTRY,  # noqa: F401
                                    ModelFileError, file_digest, require_model_file, resolve_model_path)

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
    """Write a model file (float16 weights + metadata) atomically; the metadata is also stored as
    JSON inside the archive so pipelines can be validated without importing torch."""
    import io
    import json
    import zipfile

    from handprep.io import atomic_write_bytes

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, "meta": meta, "state_dict": state}, buffer)
    buffer.seek(0)
    prefix = zipfile.ZipFile(buffer).namelist()[0].split("/")[0]  # torch only reads entries in its folder
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(f"{prefix}/{META_ENTRY}", json.dumps(meta, default=str))
    atomic_write_bytes(path, buffer.getvalue())


def read_model_file(path: str | os.PathLike) -> dict:
    """Load and check a model file (weights_only); raise ModelFileError with the fix."""
    path = require_model_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable model file ({type(exc).__name__}: {str(exc)[:200]}). "
                             "It may be truncated, or not a handprep model.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a handprep segmenter model (no '{FORMAT}' header); "
                             "train one with 'handprep segment-train'")
    if data.get("version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format {data['version']} is newer than this handprep "
                             f"understands ({FORMAT_VERSION}); upgrade handprep")
    return data


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network from a model file; returns ``(model in eval mode, meta)``."""
    data = read_model_file(path)
    meta = data["meta"]
    model = build_unet(meta["encoder"], meta["encoder_depth"], tuple(meta["decoder_channels"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the {meta['encoder']} U-Net it names ({exc})") from exc
    return model.to(device).eval(), meta


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use device: auto or cpu")
    return torch.device(device)
