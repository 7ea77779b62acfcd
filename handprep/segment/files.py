"""Model files without torch: where they are, their hash, and a structural check.

Kept apart from ``model.py`` so that validating a pipeline and re-running a finished batch
(which only needs the model's hash for its cache keys) never imports torch.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

FORMAT = "handprep-segmenter"
FORMAT_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "segmenter_default.pt"


class ModelFileError(ValueError):
    """A model file is missing, unreadable or not a handprep segmenter."""


def resolve_model_path(model: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> Path:
    """``"default"`` → the shipped model; a relative path → relative to ``base_dir``."""
    if str(model) == "default":
        return DEFAULT_MODEL
    path = Path(os.path.expanduser(str(model)))
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_archive(path: str | os.PathLike) -> Path:
    """Raise ModelFileError unless ``path`` is an intact torch archive (zip); no torch import.

    Catches a missing, truncated or foreign file before any image is read; the weights and
    metadata are checked when a worker first loads the model.
    """
    path = Path(path)
    if not path.is_file():
        hint = ("the shipped default model is missing from this installation: reinstall handprep"
                if path == DEFAULT_MODEL else "train one with 'handprep segment-train' or use model: default")
        raise ModelFileError(f"{path}: model file not found ({hint})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path}: not a loadable model file ({exc}). It may be truncated, or not a "
                             "handprep model.") from None
    if not any(name.endswith("data.pkl") for name in names):
        raise ModelFileError(f"{path}: not a torch model file (no data.pkl inside); train one with "
                             "'handprep segment-train'")
    return path
