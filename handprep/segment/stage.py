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

from handprep.segment.files import (ModelFileError, check_model_archive, file_digest, model_settings, read_meta_light,
                                    resolve_model_path)
from handprep.segment.tiling import check_stride
from handprep.stages.registry import ParamError, Range, StageError, stage


def _prepare(params: dict, base_dir: Path) -> dict:
    """Resolve the model path against the YAML's folder and check the file before any image."""
    path = resolve_model_path(params["model"], base_dir)
    try:
        check_model_archive(path)
        meta = read_meta_light(path)
        if meta is None:  # a file from before the JSON copy: read it with torch
            from handprep.segment.model import read_model_file

            meta = read_model_file(path)["meta"]
        settings = model_settings(meta, path)
    except ModelFileError as exc:
        raise ParamError("model", str(exc)) from None
    if params.get("stride_px") is not None:
        try:
            check_stride(settings["tile_px"], params["stride_px"])
        except ValueError as exc:
            raise ParamError("stride_px", f"segment.{exc}") from None
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


# the last image, its probability map and its mask before post-processing, so ``describe``
# scores the mask the stage just made as ``handprep segment`` does
_LAST: list = [None, None, None]


def _describe(image: np.ndarray, mask: np.ndarray | None, model: str = "default", stride_px=None,
              window: str = "constant", threshold=None, batch_size: int = 16, device: str = "auto") -> dict:
    """Quality numbers and flags of the mask this stage made (see ``handprep.segment.quality``)."""
    from handprep.segment.quality import mask_quality

    if mask is None:
        return {}
    prob, raw = (_LAST[1], _LAST[2]) if _LAST[0] is image else (None, mask)
    return {f"quality_{k}" if k not in ("flags", "doubtful") else k: v for k, v in mask_quality(raw, prob).items()}


@stage("segment", kind="segmenter", version=3, expensive=True, prepare=_prepare, identity=_identity,
       describe=_describe, warmup=_warmup)
def segment(
    image: np.ndarray,
    model: str = "default",
    stride_px: Annotated[int, Range(8, 1024)] | None = None,
    window: Literal["constant", "gaussian"] = "constant",
    threshold: Annotated[float, Range(0.0, 1.0)] | None = None,
    batch_size: Annotated[int, Range(1, 1024)] = 16,
    device: Literal["auto", "cpu", "cuda"] = "auto",
) -> np.ndarray:
    """Hand mask from a patch U-Net: overlapping tiles averaged, at the model's working scale.

    The image is scaled so its long side is the model's ``work_size_px``, normalised, cut into
    the model's tiles (128 px) every ``stride_px`` (default: the stride recorded in the model
    file; never more than a tile) with the last tile flush to the border,
    predicted in batches, averaged where tiles overlap (``constant`` as in the reference
    method, or a ``gaussian`` window), scaled back to full size, thresholded (the model's
    own threshold unless given) and post-processed as the model file says (holes filled;
    the largest region kept, or regions under 5 % of the largest dropped). ``model`` is ``default`` (shipped) or a path to a model
    file from ``handprep segment-train``. The manifest gets quality numbers and flags for the
    mask (border contact, area, large components, confidence; ``doubtful`` if any fails).
    """
    from handprep.segment.infer import get_segmenter

    try:
        segmenter = get_segmenter(model, device)
    except ModelFileError as exc:
        raise StageError(str(exc)) from None
    from handprep.segment.infer import binarise

    try:
        prob = segmenter.probability(image, stride_px=stride_px, window=window, batch_size=batch_size)
    except ValueError as exc:  # e.g. a stride larger than the model's tile
        raise StageError(str(exc)) from None
    raw = binarise(prob, segmenter.threshold(threshold))
    _LAST[:] = [image, prob, raw]
    return segmenter.finish(raw)
