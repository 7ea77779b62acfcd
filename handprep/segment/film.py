"""Where the exposed film lies on a scanner's canvas: its region and its bounding box."""
from __future__ import annotations

import cv2
import numpy as np

from handprep.stages.mask import fill_contours


def film_region(image: np.ndarray, level: int = 4, min_fraction: float = 0.05) -> np.ndarray:
    """The exposed film inside black padding: the region brighter than ``level`` (after a blur).

    Raw films are often scanned onto a black canvas (exactly 0). A faint film's percentiles
    are then dominated by the padding, and the film looks uniformly grey. Regions smaller than
    ``min_fraction`` of the image (labels in the padding) are dropped; the region is filled.
    """
    small = cv2.GaussianBlur(image, (0, 0), 2)
    binary = np.where(small > level, 255, 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_fraction * image.size]
    if not keep:
        return np.full(image.shape, 255, np.uint8)
    return fill_contours(np.where(np.isin(labels, keep), 255, 0).astype(np.uint8))


def film_box(image: np.ndarray, margin_px: int = 8) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the film inside black padding, ``margin_px`` wider; the whole image without padding.

    Cropping to it before scaling to the working size gives a small film on a large black
    canvas the model's full resolution (its fingers would otherwise be a few pixels wide).
    """
    h, w = image.shape[:2]
    small = image if image.dtype == np.uint8 else cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    ys, xs = np.nonzero(film_region(small))
    if len(xs) == 0:
        return 0, 0, w, h
    return (max(0, int(xs.min()) - margin_px), max(0, int(ys.min()) - margin_px),
            min(w, int(xs.max()) + 1 + margin_px), min(h, int(ys.max()) + 1 + margin_px))
