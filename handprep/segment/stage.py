"""The ``segment`` pipeline stage: a hand mask from the U-Net (torch is imported on first use)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from handprep.stages.registry import ParamError, Range, StageError, stage


def _prepare(params: dict, base_dir: Path) -> dict:
    """Resolve the model path against the YAML's folder and check the file before any image."""
    from handprep.segment.model import ModelFileError, read_model_file, resolve_model_path

    from handprep.segment.infer import model_settings
    from handprep.segment.tiling import check_stride

    path = resolve_model_path(params["model"], base_dir)
    try:
        settings = model_settings(read_model_file(path)["meta"], path)
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
    from handprep.segment.model import file_digest

    return file_digest(path)


def _identity(params: dict) -> dict:
    """The model file's content hash: retraining or upgrading the default model misses the cache."""
    from handprep.segment.model import resolve_model_path

    path = resolve_model_path(params["model"])
    return {"model_sha256": _model_digest(str(path), path.stat().st_mtime)}


# the last image's probability map, so ``describe`` can score the mask the stage just made
_LAST: list = [None, None]


def _describe(image: np.ndarray, mask: np.ndarray | None, model: str = "default", stride_px=None,
              window: str = "constant", threshold=None, batch_size: int = 16, device: str = "auto") -> dict:
    """Quality numbers and flags of the mask this stage made (see ``handprep.segment.quality``)."""
    from handprep.segment.quality import mask_quality

    if mask is None:
        return {}
    prob = _LAST[1] if _LAST[0] is image else None
    return {f"quality_{k}" if k not in ("flags", "doubtful") else k: v for k, v in mask_quality(mask, prob).items()}


@stage("segment", kind="segmenter", version=2, expensive=True, prepare=_prepare, identity=_identity,
       describe=_describe)
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
    method, or a ``gaussian`` window), scaled back to full size and thresholded (the model's
    own threshold unless given). ``model`` is ``default`` (shipped) or a path to a model
    file from ``handprep segment-train``. The manifest gets quality numbers and flags for the
    mask (border contact, area, large components, confidence; ``doubtful`` if any fails).
    """
    from handprep.segment.infer import get_segmenter
    from handprep.segment.model import ModelFileError

    try:
        segmenter = get_segmenter(model, device)
    except ModelFileError as exc:
        raise StageError(str(exc)) from None
    from handprep.segment.infer import binarise

    try:
        prob = segmenter.probability(image, stride_px=stride_px, window=window, batch_size=batch_size)
    except ValueError as exc:  # e.g. a stride larger than the model's tile
        raise StageError(str(exc)) from None
    _LAST[:] = [image, prob]
    return binarise(prob, segmenter.threshold(threshold))
