"""Intensity stages: bit-depth conversion, polarity, CLAHE, Laplacian sharpening, min–max."""
from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np

from handprep.stages.contrast import Percent, border_ring, intensity_range, percentiles
from handprep.stages.registry import Range, stage


def _stretch_lut(lo: int, hi: int, size: int, top: int, dtype) -> np.ndarray:
    """Lookup table mapping [lo, hi] linearly onto [0, top], clipped outside."""
    values = np.arange(size, dtype=np.float64)
    scale = top / max(hi - lo, 1)
    return np.clip(np.round((values - lo) * scale), 0, top).astype(dtype)


@stage("to_uint8", kind="image")
def to_uint8(
    image: np.ndarray,
    method: Literal["minmax", "percentile", "bits"] = "minmax",
    lower_percentile: Percent = 0.5,
    upper_percentile: Percent = 99.5,
) -> np.ndarray:
    """Convert a 16-bit image to 8 bits (8-bit images pass through unchanged).

    ``minmax`` maps the image's own min..max onto 0..255; ``percentile`` maps
    ``lower_percentile``..``upper_percentile`` (robust to hot pixels and burned-in text);
    ``bits`` divides by the detector range (see ``intensity_range``), keeping absolute levels.
    """
    if image.dtype == np.uint8:
        return image
    if method == "bits":
        lo, hi = 0, intensity_range(image)
    elif method == "percentile":
        lo, hi = percentiles(image, lower_percentile, upper_percentile)
    else:
        lo, hi = int(image.min()), int(image.max())
    return _stretch_lut(lo, hi, 65536, 255, np.uint8)[image]


def _polarity_numbers(image: np.ndarray, border_fraction: float) -> tuple[float, float]:
    """Where the border ring's and the whole image's medians sit in the p1..p99 span (0..1)."""
    lo, median, hi = percentiles(image, 1, 50, 99)
    span = max(hi - lo, 1)
    h, w = image.shape
    bh, bw = max(1, int(h * border_fraction)), max(1, int(w * border_fraction))
    ring_median = percentiles(border_ring(image, bh, bw)[None, :], 50)[0]
    return (ring_median - lo) / span, (median - lo) / span


def _describe_polarity(image, mask=None, mode="auto", border_fraction=0.05):
    ring, whole = _polarity_numbers(image, border_fraction)
    return {"border_level": round(ring, 3), "median_level": round(whole, 3)}


@stage("polarity", kind="image", describe=_describe_polarity)
def polarity(
    image: np.ndarray,
    mode: Literal["auto", "invert", "keep"] = "auto",
    border_fraction: Annotated[float, Range(0.01, 0.25)] = 0.05,
) -> np.ndarray:
    """Make bone bright and background dark.

    ``auto`` inverts when both the border ring (outer ``border_fraction`` of each side) and
    the whole image have their median in the bright half of the p1..p99 span: a radiograph
    with a bright background. A bright film frame alone does not trigger it, because the
    image median stays dark.
    """
    if mode == "keep":
        return image
    if mode == "auto":
        ring, whole = _polarity_numbers(image, border_fraction)
        if not (ring > 0.5 and whole > 0.5):
            return image
    top = np.iinfo(image.dtype).max
    return (top - image).astype(image.dtype)


def adaptive_clip_limit(image: np.ndarray, clip_limit: float, target_brightness: float,
                        min_clip_limit: float, max_clip_limit: float) -> float:
    """Clip limit scaled by ``target_brightness / brightness`` (darker → higher), clamped.

    Brightness is the mean of the non-zero pixels over the intensity range, so a masked
    image is judged on the hand, not the black background.
    """
    values = image[image > 0]
    brightness = float(values.mean()) / intensity_range(image) if values.size else 0.0
    if brightness <= 0:
        return max_clip_limit
    return float(np.clip(clip_limit * target_brightness / brightness, min_clip_limit, max_clip_limit))


def _describe_clahe(image, mask=None, clip_limit=3.0, tile_grid=8, adaptive=False, target_brightness=0.5,
                    min_clip_limit=1.0, max_clip_limit=6.0):
    if not adaptive:
        return {}
    return {"clip_limit": round(adaptive_clip_limit(image, clip_limit, target_brightness,
                                                    min_clip_limit, max_clip_limit), 3)}


@stage("clahe", kind="image", describe=_describe_clahe)
def clahe(
    image: np.ndarray,
    clip_limit: Annotated[float, Range(0.1, 100.0)] = 3.0,
    tile_grid: Annotated[int, Range(1, 64)] = 8,
    adaptive: bool = False,
    target_brightness: Annotated[float, Range(0.01, 1.0)] = 0.5,
    min_clip_limit: Annotated[float, Range(0.1, 100.0)] = 1.0,
    max_clip_limit: Annotated[float, Range(0.1, 100.0)] = 6.0,
) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation (OpenCV), ``tile_grid``×``tile_grid`` tiles.

    With ``adaptive`` the clip limit follows image brightness (see ``adaptive_clip_limit``).
    Works on uint8 and uint16 images and keeps the dtype.
    """
    if adaptive:
        clip_limit = adaptive_clip_limit(image, clip_limit, target_brightness, min_clip_limit, max_clip_limit)
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid)).apply(image)


@stage("sharpen", kind="image")
def sharpen(
    image: np.ndarray,
    strength: Annotated[float, Range(0.0, 10.0)] = 1.0,
    ksize: Literal[1, 3, 5] = 1,
) -> np.ndarray:
    """Laplacian sharpening: ``image − strength · Laplacian(image)``, clipped to the dtype range.

    ``ksize=1`` is the 4-neighbour kernel [[0,1,0],[1,-4,1],[0,1,0]] of the reference method.
    """
    depth = cv2.CV_16S if image.dtype == np.uint8 else cv2.CV_32F
    laplacian = cv2.Laplacian(image, depth, ksize=ksize)
    if strength == 1.0 and image.dtype == np.uint8:
        # int16 arithmetic is exact here and 3× faster than float
        sharpened = cv2.subtract(image.astype(np.int16), laplacian)
    else:
        sharpened = image.astype(np.float32) - np.float32(strength) * laplacian.astype(np.float32)
    top = np.iinfo(image.dtype).max
    return np.clip(sharpened, 0, top).astype(image.dtype)


@stage("normalize", kind="image")
def normalize(
    image: np.ndarray,
    lower_percentile: Percent = 0.0,
    upper_percentile: Percent = 100.0,
    ignore_zero: bool = False,
) -> np.ndarray:
    """Per-image min–max stretch onto the dtype's full range (0..255 for uint8).

    Percentiles other than 0/100 make it robust to outliers. ``ignore_zero`` computes the
    span on non-zero pixels only and keeps zeros at zero (for masked images). The trainer
    divides by the range to get [0, 1].
    """
    lo, hi = percentiles(image, lower_percentile, upper_percentile, ignore_zero=ignore_zero)
    top = np.iinfo(image.dtype).max
    lut = _stretch_lut(lo, hi, top + 1, top, image.dtype)
    if ignore_zero:
        lut[0] = 0
    return lut[image]
