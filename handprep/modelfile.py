"""Model files of every capability: float16 weights and JSON-able metadata in one torch archive.

Written atomically, with a JSON copy of the metadata inside the archive (readable without
torch); read with ``torch.load(..., weights_only=True)``, so no pickled code ever runs.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from handprep.io import atomic_write_bytes

if TYPE_CHECKING:
    import torch
    from torch import nn

META_ENTRY = "handprep-meta.json"  # torch is imported in the functions: this name is read without it


def save_weights(path: str | os.PathLike, model: "nn.Module", meta: dict, fmt: str, version: int) -> None:
    """Write ``{"format", "version", "meta", "state_dict"}`` (float16 weights) atomically."""
    import torch

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": fmt, "version": version, "meta": meta, "state_dict": state}, buffer)
    buffer.seek(0)
    prefix = zipfile.ZipFile(buffer).namelist()[0].split("/")[0]  # torch only reads entries in its folder
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(f"{prefix}/{META_ENTRY}", json.dumps(meta, default=str))
    atomic_write_bytes(path, buffer.getvalue())


def load_checked(path: Path, fmt: str, version: int, error: type[Exception], foreign: str) -> dict:
    """Load a model archive (weights_only) and check its header; ``foreign`` is the message
    for a loadable file of another kind. Raises ``error`` with what to do."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(f"{path}: not a loadable model file ({type(exc).__name__}: {str(exc)[:200]}). "
                    "It may be truncated, or not a handprep model.") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: {foreign}")
    if data.get("version", 0) > version:
        raise error(f"{path}: model format {data['version']} is newer than this handprep understands "
                    f"({version}); upgrade handprep")
    return data


def restore_weights(model: "nn.Module", data: dict, path: Path, error: type[Exception], what: str) -> None:
    """Load a model file's (float16) weights into ``model`` as float32; ``what`` names the
    network the file claims to hold, for the error when the weights do not fit it."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise error(f"{path}: weights do not fit the {what} it names ({exc})") from exc


def pick_device(device: str = "auto") -> "torch.device":
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error saying what to use."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use device auto or cpu")
    return torch.device(device)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """A training checkpoint (``last.pt``: weights, optimiser, history) written atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
