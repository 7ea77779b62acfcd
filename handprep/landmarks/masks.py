"""Hand masks for the landmark search from the shipped segmenter, with contrast fallbacks.

The U-Net misses the hand on some grey, low-contrast films (about 2 % of rsna-raw: it
masks a marker, part of the palm, or the whole film). When the keypoints found with its
mask are implausible (off the mask, or a tiny hand in a huge mask), the radiograph is
segmented again after a contrast boost — CLAHE (clip 4), then a gamma of 2 — and the
first plausible finding wins. On the 20 rsna-raw films where the plain mask failed, CLAHE
alone recovered 14, gamma 10 (15 together).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from handprep.landmarks.anatomy import qa
from handprep.landmarks.detect import HandLandmarks, LandmarkDetector
from handprep.landmarks.render import stretch

IMPLAUSIBLE = ("not_found", "outside_mask", "mask_area")


def boosted(image: np.ndarray, kind: str) -> np.ndarray:
    """A contrast-boosted uint8 copy of the radiograph for re-segmentation."""
    level = stretch(image)
    if kind == "clahe":
        return cv2.createCLAHE(4.0, (8, 8)).apply(np.round(level * 255).astype(np.uint8))
    if kind == "gamma":
        return np.round(level ** 2 * 255).astype(np.uint8)
    raise ValueError(f"unknown contrast boost '{kind}'")


def segmenter_masks(image: np.ndarray, segmenter) -> Iterator[tuple[str, np.ndarray]]:
    """(source, mask): the segmenter's mask, then masks of contrast-boosted copies."""
    from handprep.stages.mask import fill_contours

    yield "segmenter", fill_contours(segmenter.mask(image), 127, 0.05)
    for kind in ("clahe", "gamma"):
        yield f"segmenter+{kind}", fill_contours(segmenter.mask(boosted(image, kind)), 127, 0.05)


def is_plausible(found: HandLandmarks, mask: np.ndarray | None) -> bool:
    flags = qa(found, mask)["qa"].split("+")
    return not any(flag in IMPLAUSIBLE for flag in flags)


def detect_with_segmenter(detector: LandmarkDetector, image: np.ndarray,
                          segmenter) -> tuple[HandLandmarks, np.ndarray, str]:
    """Keypoints with the first mask that gives a plausible hand; else the best finding seen."""
    best = None
    for source, mask in segmenter_masks(image, segmenter):
        found = detector.detect(image, mask)
        if is_plausible(found, mask):
            return found, mask, source
        if best is None or (found.found and found.score > best[0].score):
            best = (found, mask, source)
    return best
