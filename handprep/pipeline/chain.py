"""Applying configured stages to arrays, kind by kind (no files: the runner does those)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from handprep.pipeline.config import StageStep
from handprep.stages.mask import mask_area_fraction
from handprep.stages.registry import StageError, get_stage


@dataclass
class StepResult:
    image: np.ndarray
    mask: np.ndarray | None
    keep: bool = True
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)  # name -> image the runner saves as rois/<id>_<name>.png


def apply_step(step: StageStep, image: np.ndarray, mask: np.ndarray | None) -> StepResult:
    """Run one configured stage; numbers it reports come back unprefixed in ``metrics``."""
    stage = get_stage(step.name)
    params = step.params
    kind = stage.kind
    if stage.needs_mask and mask is None:
        raise StageError(f"stage '{step.name}' needs a mask but this image has none")
    # a segmenter describes the mask it makes, so its describe runs after it
    metrics = stage.describe(image, mask, **params) if stage.describe and kind != "segmenter" else {}
    result = StepResult(image, mask, metrics=metrics)
    if kind == "filter":
        verdict = stage.func(image, **params)
        result.keep, result.reason = verdict.keep, verdict.reason
        metrics.update(verdict.metrics)
    elif kind == "image":
        result.image = stage.func(image, **params)
    elif kind == "masked":
        result.image = stage.func(image, mask, **params)
    elif kind == "mask":
        result.mask = stage.func(mask, **params)
    elif kind == "segmenter":
        result.mask = stage.func(image, **params)
        if stage.describe:
            metrics.update(stage.describe(image, result.mask, **params))
    elif kind == "geometry":
        geometry = stage.func(image, mask, **params)
        result.image, result.mask = geometry.image, geometry.mask
        metrics.update(geometry.info)
        result.extras = dict(getattr(geometry, "extras", None) or {})
    if kind in ("mask", "segmenter"):
        metrics["mask_area"] = round(mask_area_fraction(result.mask), 5)
    return result


def metric_prefixes(steps: tuple[StageStep, ...] | list[StageStep]) -> list[str]:
    """Column prefix per step: the stage name, numbered when a stage appears twice (dilate, dilate_2)."""
    seen: dict[str, int] = {}
    prefixes = []
    for step in steps:
        seen[step.name] = seen.get(step.name, 0) + 1
        prefixes.append(step.name if seen[step.name] == 1 else f"{step.name}_{seen[step.name]}")
    return prefixes
