"""Measuring contrast and excluding low-contrast radiographs (SPEC step 1)."""
from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np

from handprep.stages.registry import Range, Verdict, stage

Percent = Annotated[float, Range(0.0, 100.0)]


def intensity_range(image: np.ndarray) -> int:
    """The value range a radiograph's pixels can span.

    255 for uint8. For uint16 the smallest ``2**bits - 1`` (bits ≥ 8) holding the maximum,
    so a 12-bit detector stored in 16 bits is judged against 4095, not 65535.
    """
    if image.dtype == np.uint8:
        return 255
    top = int(image.max())
    bits = max(8, top.bit_length())
    return 2**bits - 1


def histogram(image: np.ndarray) -> np.ndarray:
    """Pixel counts per grey level (OpenCV's histogram is ~20× faster than bincount for uint8)."""
    if image.dtype == np.uint8:
        return cv2.calcHist([np.ascontiguousarray(image)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(image.ravel(), minlength=2)


def percentiles(image: np.ndarray, *pcts: float, ignore_zero: bool = False) -> list[int]:
    """Nearest-rank percentiles of an integer image from its histogram (fast for uint8/uint16).

    With ``ignore_zero`` the zero pixels (e.g. outside a hand mask) are left out; an image
    with no pixels left gives zeros.
    """
    counts = histogram(image).copy()
    if ignore_zero:
        counts[0] = 0
    total = counts.sum()
    if total == 0:
        return [0 for _ in pcts]
    cumulative = np.cumsum(counts)
    out = []
    for pct in pcts:
        rank = max(1, int(np.ceil(pct / 100.0 * total)))
        out.append(int(np.searchsorted(cumulative, rank)))
    return out


def border_ring(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The pixels of the outer ``rows`` lines and ``cols`` columns of each side, as one flat array."""
    return np.concatenate([image[:rows].ravel(), image[-rows:].ravel(), image[:, :cols].ravel(), image[:, -cols:].ravel()])


def measure_contrast(image: np.ndarray, lower_percentile: float = 1.0, upper_percentile: float = 99.0) -> float:
    """Span between two percentiles as a fraction of the intensity range (0..1).

    The same measure as ``skimage.exposure.is_low_contrast`` (which calls an image low
    contrast when this is below ``fraction_threshold``), but with nearest-rank percentiles
    and the range from :func:`intensity_range`.
    """
    lo, hi = percentiles(image, lower_percentile, upper_percentile)
    return (hi - lo) / intensity_range(image)


@stage("low_contrast", kind="filter")
def low_contrast(
    image: np.ndarray,
    fraction_threshold: Annotated[float, Range(0.0, 1.0)] = 0.05,
    lower_percentile: Percent = 1.0,
    upper_percentile: Percent = 99.0,
) -> Verdict:
    """Drop radiographs whose contrast is below ``fraction_threshold``.

    Contrast is ``(p_upper - p_lower) / range`` (see :func:`measure_contrast`); an all-black
    or constant image has contrast 0.
    """
    if upper_percentile <= lower_percentile:
        raise ValueError("upper_percentile must be above lower_percentile")
    contrast = measure_contrast(image, lower_percentile, upper_percentile)
    keep = contrast >= fraction_threshold
    reason = "" if keep else (
        f"low contrast: {contrast:.4f} < fraction_threshold {fraction_threshold} "
        f"(p{lower_percentile:g}..p{upper_percentile:g} span / intensity range)"
    )
    return Verdict(keep, reason, {"contrast": round(contrast, 5)})
