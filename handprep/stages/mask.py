"""Mask stages: contour filling, dilation, overlay (SPEC steps 4–6) and a classical hand mask."""
from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np

from handprep.stages.contrast import border_ring
from handprep.stages.registry import Range, StageError, stage


def check_mask(image: np.ndarray, mask: np.ndarray) -> None:
    """Refuse a mask whose size differs from its image (the usual cause: a resized export)."""
    if mask.shape != image.shape[:2]:
        raise StageError(
            f"mask is {mask.shape[1]}×{mask.shape[0]} px but the image is {image.shape[1]}×{image.shape[0]} px; "
            "masks must have exactly the image's size (re-export the mask at full resolution)"
        )


def mask_area_fraction(mask: np.ndarray) -> float:
    return cv2.countNonZero(mask) / mask.size


@stage("fill_contours", kind="mask")
def fill_contours(
    mask: np.ndarray,
    threshold: Annotated[int, Range(0, 254)] = 127,
    min_area_ratio: Annotated[float, Range(0.0, 1.0)] = 0.0,
) -> np.ndarray:
    """Threshold, find the external contours and fill them (removes holes inside the hand).

    ``min_area_ratio`` > 0 drops regions smaller than that fraction of the largest one
    (stray markers, labels); 0 keeps every region, as in the reference method. Pixels
    above ``threshold`` are foreground; the result is 0/255.
    """
    binary = np.where(mask > threshold, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(binary)
    if not contours:
        return filled
    if min_area_ratio > 0:
        areas = [cv2.contourArea(c) for c in contours]
        largest = max(areas)
        contours = [c for c, a in zip(contours, areas) if a >= min_area_ratio * largest]
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


@stage("dilate", kind="mask")
def dilate(
    mask: np.ndarray,
    kernel: Annotated[int, Range(1, 101, odd=True)] = 11,
    iterations: Annotated[int, Range(0, 20)] = 1,
) -> np.ndarray:
    """Dilate with a ``kernel``×``kernel`` square of ones, closing gaps at the hand border."""
    return cv2.dilate(mask, np.ones((kernel, kernel), np.uint8), iterations=iterations)


@stage("erode", kind="mask")
def erode(
    mask: np.ndarray,
    kernel: Annotated[int, Range(1, 101, odd=True)] = 3,
    iterations: Annotated[int, Range(0, 20)] = 1,
) -> np.ndarray:
    """Erode with a ``kernel``×``kernel`` square of ones (trims a mask that overshoots)."""
    return cv2.erode(mask, np.ones((kernel, kernel), np.uint8), iterations=iterations)


@stage("overlay", kind="masked")
def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep image pixels where the mask is set, zero elsewhere (bitwise and).

    An empty mask is an error rather than a black output image: no hand was found.
    """
    check_mask(image, mask)
    if not cv2.countNonZero(mask):
        raise StageError("mask is empty: no hand found, the image would be all black "
                         "(check the image, or the mask source)")
    return cv2.bitwise_and(image, image, mask=mask)


def largest_component(binary: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground region of a 0/255 mask (empty stays empty)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.zeros_like(binary)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == biggest, 255, 0).astype(np.uint8)


@stage("threshold_mask", kind="segmenter")
def threshold_mask(
    image: np.ndarray,
    work_size_px: Annotated[int, Range(64, 4096)] = 512,
    blur_px: Annotated[int, Range(0, 31)] = 5,
    method: Literal["multiotsu", "otsu", "background"] = "multiotsu",
    background_fraction: Annotated[float, Range(0.0, 1.0)] = 0.1,
) -> np.ndarray:
    """Classical hand mask: threshold, largest component, filled holes.

    ``multiotsu`` splits the histogram into background / soft tissue / bone and keeps
    everything above the lower threshold; plain ``otsu`` (two classes) often splits bone
    from soft tissue instead and loses the fingers' outline. ``background`` takes the border
    ring's median as the background level and keeps what is brighter by more than
    ``background_fraction`` of the span up to the 99th percentile: it follows the faint
    soft-tissue edge on dark, clean backgrounds. A baseline and a source of
    draft masks: it cannot tell a hand from a bright film border or a marker touching it
    (the learned ``segment`` stage can). Runs at ``work_size_px`` on the long side.
    """
    h, w = image.shape
    scale = min(1.0, work_size_px / max(h, w))
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if small.dtype != np.uint8:
        small = cv2.normalize(small, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if blur_px > 0:
        small = cv2.GaussianBlur(small, (0, 0), blur_px / 2)
    if method == "background":
        h_s, w_s = small.shape
        band = max(1, min(h_s, w_s) // 20)
        background = float(np.median(border_ring(small, band, band)))
        top = float(np.percentile(small, 99))
        level = background + background_fraction * max(top - background, 1.0)
        binary = np.where(small > level, 255, 0).astype(np.uint8)
    elif method == "multiotsu" and len(np.unique(small)) >= 3:
        from skimage.filters import threshold_multiotsu

        level = threshold_multiotsu(small, classes=3)[0]
        binary = np.where(small > level, 255, 0).astype(np.uint8)
    else:
        _, binary = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    hand = fill_contours(largest_component(binary))
    if scale < 1:
        hand = cv2.resize(hand, (w, h), interpolation=cv2.INTER_LINEAR)
        hand = np.where(hand > 127, 255, 0).astype(np.uint8)
    return hand
