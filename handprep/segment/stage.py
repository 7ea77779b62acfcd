"""The ``segment`` pipeline stage: a hand mask from the U-Net.

Validating a pipeline and computing cache keys need only the model file's structure and
hash (``segment.files``, no torch); torch and the weights load in ``warmup``, once per
worker, and only when some image still has to be segmented.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from handprep.segment.files import ModelFileError, check_model_archive, file_digest, resolve_model_path
from handprep.stages.registry import ParamError, Range, StageError, stage


def _prepare(params: dict, base_dir: Path) -> dict:
    """Resolve the model path against the YAML's folder and check the file before any image."""
    path = resolve_model_path(params["model"], base_dir)
    try:
        check_model_archive(path)
    except ModelFileError as exc:
        raise ParamError("model", str(exc)) from None
    return {**params, "model": "default" if params["model"] == "default" else str(path)}


@functools.lru_cache(maxsize=8)
def _model_digest(path: str, mtime: float) -> str:
    return file_digest(path)


def _identity(params: dict) -> dict:
    """The model file's content hash: retraining or upgrading the default model misses the cache."""
    path = resolve_model_path(params["model"])
    return {"model_sha256": _model_digest(str(path), path.stat().st_mtime)}


def _warmup(params: dict) -> None:
    """Load the model into this process's cache (raises StageError with the file's problem)."""
    from handprep.segment.infer import get_segmenter

    try:
        get_segmenter(params["model"], params["device"])
    except ModelFileError as exc:
        raise StageError(str(exc)) from None


@stage("segment", kind="segmenter", expensive=True, prepare=_prepare, identity=_identity, warmup=_warmup)
def segment(
    image: np.ndarray,
    model: str = "default",
    stride_px: Annotated[int, Range(8, 1024)] = 96,
    window: Literal["constant", "gaussian"] = "constant",
    threshold: Annotated[float, Range(0.0, 1.0)] | None = None,
    batch_size: Annotated[int, Range(1, 1024)] = 16,
    device: Literal["auto", "cpu", "cuda"] = "auto",
) -> np.ndarray:
    """Hand mask from a patch U-Net: overlapping tiles averaged, at the model's working scale.

    The image is scaled so its long side is the model's ``work_size_px``, normalised, cut into
    the model's tiles (128 px) every ``stride_px`` with the last tile flush to the border,
    predicted in batches, averaged where tiles overlap (``constant`` as in the reference
    method, or a ``gaussian`` window), scaled back to full size and thresholded (the model's
    own threshold unless given). ``model`` is ``default`` (shipped) or a path to a model
    file from ``handprep segment-train``.
    """
    from handprep.segment.infer import get_segmenter

    try:
        segmenter = get_segmenter(model, device)
    except ModelFileError as exc:
        raise StageError(str(exc)) from None
    return segmenter.mask(image, threshold=threshold, stride_px=stride_px, window=window, batch_size=batch_size)
