"""Renderings of a radiograph that MediaPipe (trained on photographs) recognises as a hand.

An X-ray is not a photograph: bone is bright, soft tissue faint, the background black or
grey. MediaPipe finds a hand in about a third of raw radiographs shown as they are, but in
nearly all of them when the hand is drawn the way a camera would see it — a skin-toned
silhouette on a light background — with the X-ray intensity shading it, so the joints
still show where the fingers bend.
"""
from __future__ import annotations

import cv2
import numpy as np

SKIN_RGB = np.array([224, 172, 140], np.float32)
LIGHT_BACKGROUND = 235.0
DARK_BACKGROUND = 30.0
RENDERINGS = ("silhouette", "silhouette_dark", "plain", "inverted")
NEEDS_MASK = ("silhouette", "silhouette_dark")


def stretch(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Intensity as float32 in [0, 1]: 1st–99th percentile (of the hand when a mask is given)."""
    if image.dtype not in (np.uint8, np.uint16):
        image = cv2.normalize(image, None, 0, 65535, cv2.NORM_MINMAX).astype(np.uint16)
    values = image[mask > 0] if mask is not None and mask.any() else image
    lo, hi = np.percentile(values, (1, 99))
    return np.clip((image.astype(np.float32) - lo) / max(float(hi - lo), 1.0), 0, 1)


def _silhouette(image: np.ndarray, mask: np.ndarray, background: float, light: bool) -> np.ndarray:
    level = stretch(image, mask)
    # light background: bone darker (like shading on skin); dark background: bone lighter
    shade = 0.75 + 0.3 * (1 - level) if light else 0.6 + 0.5 * level
    hand = shade[..., None] * SKIN_RGB
    out = np.where((mask > 0)[..., None], hand, np.float32(background))
    return np.clip(out, 0, 255).astype(np.uint8)


def render(image: np.ndarray, mask: np.ndarray | None, kind: str) -> np.ndarray:
    """An H×W×3 RGB uint8 view of the radiograph (same size and pixel grid as ``image``).

    ``silhouette``: the masked hand skin-toned on a light background, shaded by intensity;
    ``silhouette_dark``: the same on a dark background; ``plain``: the grey image
    (percentile-stretched); ``inverted``: its negative. Silhouettes need a mask.
    """
    if kind in NEEDS_MASK:
        if mask is None:
            raise ValueError(f"rendering '{kind}' needs a hand mask")
        return _silhouette(image, mask, LIGHT_BACKGROUND if kind == "silhouette" else DARK_BACKGROUND,
                           kind == "silhouette")
    grey = np.round(stretch(image) * 255).astype(np.uint8)
    if kind == "inverted":
        grey = 255 - grey
    elif kind != "plain":
        raise ValueError(f"unknown rendering '{kind}'; valid: {', '.join(RENDERINGS)}")
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The biggest connected region of a mask (drops markers and labels), 0/255."""
    binary = (mask > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return binary * 255
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == biggest, 255, 0).astype(np.uint8)
