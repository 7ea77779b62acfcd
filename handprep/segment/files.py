"""Model files without torch: where they are, their hash, and a structural check.

Kept apart from ``model.py`` so that validating a pipeline and re-running a finished batch
(which only needs the model's hash for its cache keys) never imports torch.
"""
from __future__ import annotations

import hashlib
import os
import json
import zipfile
from pathlib import Path

from handprep.modelfile import META_ENTRY
from handprep.segment.tiling import check_stride

FORMAT = "handprep-segmenter"
FORMAT_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "segmenter_default.pt"
NORMALISATION = "percentile 0.5-99.5 per image, clipped to [0, 1]"
NORMALISATION_CLAHE = NORMALISATION + ", then CLAHE (clip limit 2, 8x8 tiles)"
NORMALISATIONS = {"percentile": NORMALISATION, "percentile+clahe": NORMALISATION_CLAHE}  # CLI name → file text
# what a model file may name, and what files written before these settings existed mean
INPUT_CROPS = ("none", "film_box")
POSTPROCESSING = ("fill_5pct", "largest_region")
LEGACY_SETTINGS = {"input_crop": "none", "postprocess": "fill_5pct"}


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


def require_model_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; ModelFileError with the fix when there is no such file."""
    path = Path(path)
    if not path.is_file():
        hint = ("the shipped default model is missing from this installation: reinstall handprep"
                if path == DEFAULT_MODEL else "train one with 'handprep segment-train' or use model: default")
        raise ModelFileError(f"{path}: model file not found ({hint})")
    return path


def check_model_archive(path: str | os.PathLike) -> Path:
    """Raise ModelFileError unless ``path`` is an intact torch archive (zip); no torch import.

    Catches a missing, truncated or foreign file before any image is read; the weights and
    metadata are checked when a worker first loads the model.
    """
    path = require_model_file(path)
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


def read_meta_light(path: str | os.PathLike) -> dict | None:
    """The metadata a model file carries as JSON (files written since it was added), else None."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/" + META_ENTRY)), None)
            return None if name is None else json.loads(archive.read(name))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def model_settings(meta: dict, path: str | os.PathLike = "model") -> dict:
    """Inference settings recorded in a model file: tile, working scale, stride, normalisation,
    threshold, input crop and post-processing.

    Older files without ``infer_stride_px`` get a quarter-overlap stride, and no crop with the
    5 % fill they were evaluated with; a normalisation, crop or post-processing this version
    does not implement is refused rather than silently replaced.
    """
    missing = [k for k in ("tile_px", "work_size_px") if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: the model file does not record {', '.join(missing)}; retrain it with "
                             "'handprep segment-train'")
    norm = meta.get("normalisation", NORMALISATION)
    if norm not in NORMALISATIONS.values():
        raise ModelFileError(f"{path}: the model expects images normalised as {norm!r}, which this handprep does "
                             f"not implement (it knows {' and '.join(map(repr, NORMALISATIONS.values()))}); "
                             "upgrade handprep or retrain the model")
    crop = meta.get("input_crop", LEGACY_SETTINGS["input_crop"])
    post = meta.get("postprocess", LEGACY_SETTINGS["postprocess"])
    for name, value, known in (("input crop", crop, INPUT_CROPS), ("post-processing", post, POSTPROCESSING)):
        if value not in known:
            raise ModelFileError(f"{path}: the model names the {name} {value!r}, which this handprep does not "
                                 f"implement (it knows {', '.join(known)}); upgrade handprep or retrain the model")
    tile = int(meta["tile_px"])
    stride = int(meta.get("infer_stride_px", tile * 3 // 4))
    check_stride(tile, stride)
    return {"tile_px": tile, "work_size_px": int(meta["work_size_px"]), "stride_px": stride,
            "threshold": float(meta.get("threshold", 0.5)), "normalisation": norm, "input_crop": crop,
            "postprocess": post}
