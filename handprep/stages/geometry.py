"""Geometric stages: aspect-preserving letterbox resize and crop to the hand (SPEC step 9)."""
from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np

from handprep.stages.mask import check_mask
from handprep.stages.registry import Geometry, Range, StageError, stage

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def letterbox_box(height: int, width: int, size_px: int) -> tuple[float, int, int, int, int]:
    """Scale and placement of an H×W image letterboxed into size_px×size_px.

    Returns ``(scale, new_height, new_width, pad_top, pad_left)``; the image is centred,
    odd padding goes to the bottom/right.
    """
    scale = size_px / max(height, width)
    new_h = min(size_px, max(1, round(height * scale)))
    new_w = min(size_px, max(1, round(width * scale)))
    return scale, new_h, new_w, (size_px - new_h) // 2, (size_px - new_w) // 2


@stage("resize", kind="geometry")
def resize(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    size_px: Annotated[int, Range(8, 8192)] = 384,
    interpolation: Literal["area", "linear", "cubic"] = "area",
) -> Geometry:
    """Resize to ``size_px``×``size_px`` keeping the aspect ratio; pad with zeros (no stretch).

    The mask (if any) follows with nearest-neighbour sampling. ``info`` holds ``scale``,
    ``pad_top``/``pad_left`` and the input size, so output coordinates map back to input
    ones by ``x_in = (x_out - pad_left) / scale``.
    """
    height, width = image.shape
    scale, new_h, new_w, top, left = letterbox_box(height, width, size_px)
    # INTER_AREA is the right filter for shrinking only; enlarge with linear
    method = _INTERPOLATION[interpolation]
    if method == cv2.INTER_AREA and scale > 1:
        method = cv2.INTER_LINEAR
    out = np.zeros((size_px, size_px), image.dtype)
    out[top:top + new_h, left:left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=method)
    out_mask = None
    if mask is not None:
        check_mask(image, mask)
        out_mask = np.zeros((size_px, size_px), np.uint8)
        out_mask[top:top + new_h, left:left + new_w] = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    info = {"scale": round(scale, 6), "pad_top": top, "pad_left": left,
            "in_height": height, "in_width": width}
    return Geometry(out, out_mask, info)


@stage("crop_to_mask", kind="geometry", needs_mask=True)
def crop_to_mask(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    margin: Annotated[float, Range(0.0, 1.0)] = 0.05,
) -> Geometry:
    """Crop image and mask to the mask's bounding box grown by ``margin`` × its size per side.

    ``info`` holds the box in input pixels (``crop_x0, crop_y0, crop_x1, crop_y1``, end
    exclusive); an empty mask is an error, since there is no hand to crop to.
    """
    if mask is None:
        raise StageError("crop_to_mask needs a mask: add a mask source before it")
    check_mask(image, mask)
    points = cv2.findNonZero(mask)
    if points is None:
        raise StageError("mask is empty (no hand found): nothing to crop to")
    x, y, w, h = cv2.boundingRect(points)
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(image.shape[1], x + w + dx), min(image.shape[0], y + h + dy)
    info = {"crop_x0": x0, "crop_y0": y0, "crop_x1": x1, "crop_y1": y1}
    return Geometry(image[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy(), info)
