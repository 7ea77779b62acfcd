"""Augmentation for hand segmentation: what real radiographs throw at a model.

Works on working-scale images normalised to [0, 1] (float32) and soft masks in [0, 1]. Beyond
rotation, shift, zoom and flips it synthesises what the training masks' clean black
backgrounds never show: grey and uneven backgrounds, collimation, film borders and frames,
burned-in side markers and labels, inverted polarity, gamma, blur and noise. Every draw comes
from the ``rng`` passed in, so an epoch's augmentation is reproducible from its seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from handprep.segment.infer import normalise

MARKER_TEXTS = ("L", "R", "LT", "RT", "L", "R", "PA", "AP", "1", "2", "LEFT", "RIGHT")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges (defaults tuned for RSNA-like hand radiographs)."""

    p_geometry: float = 0.95
    rotation_deg: float = 30.0
    zoom: tuple[float, float] = (0.55, 1.25)
    shift: float = 0.12
    p_hflip: float = 0.5
    p_vflip: float = 0.1
    p_background: float = 0.8
    background_level: tuple[float, float] = (0.0, 0.55)
    p_collimation: float = 0.25
    p_border: float = 0.35
    p_frame: float = 0.3
    p_cassette: float = 0.2
    p_marker: float = 0.6
    p_marker_on_hand: float = 0.2
    p_invert: float = 0.15
    gamma: tuple[float, float] = (0.6, 1.6)
    contrast: tuple[float, float] = (0.7, 1.3)
    p_blur: float = 0.3
    p_noise: float = 0.5
    noise_sigma: float = 0.04


def _affine(image, mask, rng, cfg):
    h, w = image.shape
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    zoom = rng.uniform(*cfg.zoom)
    centre = (w / 2 + rng.uniform(-cfg.shift, cfg.shift) * w, h / 2 + rng.uniform(-cfg.shift, cfg.shift) * h)
    matrix = cv2.getRotationMatrix2D(centre, angle, zoom)
    matrix[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if rng.random() < cfg.p_hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < cfg.p_vflip:
        image, mask = image[::-1], mask[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def _background_field(shape, rng, cfg) -> np.ndarray:
    """A smooth, uneven exposure field: level + tilt + low-frequency blotches."""
    h, w = shape
    level = rng.uniform(*cfg.background_level)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0, 0.25) * ((np.cos(theta) * xx / w + np.sin(theta) * yy / h) - 0.5)
    coarse = rng.normal(0, 1, (rng.integers(2, 6), rng.integers(2, 6))).astype(np.float32)
    blotch = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(0, 0.06)
    return np.clip(level + tilt + blotch, 0, 0.85).astype(np.float32)


def _collimation(image, mask, rng):
    """Unexposed film outside a (slightly rotated) collimator rectangle around the hand."""
    h, w = image.shape
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return image, mask
    x0 = max(0, xs.min() - rng.uniform(0.02, 0.2) * w)
    x1 = min(w, xs.max() + rng.uniform(0.02, 0.2) * w)
    y0 = max(0, ys.min() - rng.uniform(0.02, 0.2) * h)
    y1 = h if rng.random() < 0.7 else min(h, ys.max() + rng.uniform(0.02, 0.1) * h)
    rect = ((float(x0 + x1) / 2, float(y0 + y1) / 2), (float(x1 - x0), float(y1 - y0)), float(rng.uniform(-6, 6)))
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [cv2.boxPoints(rect).astype(np.int32)], 1)
    level = rng.uniform(0.55, 1.0)
    outside = inside == 0
    image = image.copy()
    image[outside] = level + rng.normal(0, 0.02, int(outside.sum()))
    return image, mask * inside


def _borders(image, mask, rng):
    """Bright film borders / scanner frame bands on one to four sides."""
    h, w = image.shape
    image, mask = image.copy(), mask.copy()
    level = rng.uniform(0.6, 1.0)
    for side in rng.choice(4, size=int(rng.integers(1, 5)), replace=False):
        t = max(1, int(rng.uniform(0.01, 0.07) * (h if side < 2 else w)))
        region = [np.s_[:t, :], np.s_[h - t:, :], np.s_[:, :t], np.s_[:, w - t:]][side]
        image[region] = level
        mask[region] = 0
    return image, mask


def _frame(image, mask, rng):
    """A scanner frame: a bright (or dark) rectangular outline set in from the film edge."""
    h, w = image.shape
    image, mask = image.copy(), mask.copy()
    inset_x, inset_y = (int(rng.uniform(0.0, 0.08) * s) for s in (w, h))
    thickness = max(1, int(rng.uniform(0.004, 0.025) * min(h, w)))
    level = rng.uniform(0.7, 1.0) if rng.random() < 0.8 else rng.uniform(0.0, 0.1)
    band = np.zeros((h, w), np.uint8)
    cv2.rectangle(band, (inset_x, inset_y), (w - 1 - inset_x, h - 1 - inset_y), 1, thickness)
    image[band > 0] = level
    if rng.random() < 0.5:  # the film outside the frame is often unexposed or burnt out
        outside = np.ones((h, w), np.uint8)
        cv2.rectangle(outside, (inset_x, inset_y), (w - 1 - inset_x, h - 1 - inset_y), 0, -1)
        image[outside > 0] = rng.uniform(0.0, 1.0)
        mask[outside > 0] = 0
    mask[band > 0] = 0
    return image, mask


def _cassette_edge(image, mask, rng):
    """A straight step in exposure across the film (cassette or shield edge) beside the hand."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    proj = np.cos(theta) * (xx - w / 2) + np.sin(theta) * (yy - h / 2)
    hand = mask > 0.5
    # place the edge beyond the hand's extent in that direction, so it never cuts the hand
    limit = proj[hand].max() if hand.any() else 0.0
    edge = limit + rng.uniform(0.01, 0.1) * max(h, w)
    beyond = proj > edge
    if not beyond.any():
        return image, mask
    image = image.copy()
    image[beyond] = np.clip(image[beyond] * rng.uniform(0.0, 0.5) + rng.uniform(0.0, 1.0), 0, 1)
    return image, mask


def _markers(image, mask, rng, on_hand: bool = False):
    """Burned-in side markers and labels, placed off the hand where possible (on it if ``on_hand``)."""
    h, w = image.shape
    image = image.copy()
    hand = cv2.dilate((mask > 0.1).astype(np.uint8), np.ones((5, 5), np.uint8))
    for _ in range(int(rng.integers(1, 4))):
        text = MARKER_TEXTS[rng.integers(len(MARKER_TEXTS))]
        scale = rng.uniform(0.4, 1.6) * min(h, w) / 400
        thickness = max(1, int(scale * rng.uniform(1.5, 3.5)))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        if tw >= w - 4 or th + base >= h - 4:
            continue
        for _attempt in range(12):
            x, y = int(rng.integers(2, w - tw - 2)), int(rng.integers(th + 2, h - base - 2))
            if (hand[y - th:y + base, x:x + tw].mean() > 0.5) == on_hand:
                break
        stamp = np.zeros((h, w), np.uint8)
        boxed = rng.random() < 0.3
        if boxed:  # a label: dark letters on a bright box
            cv2.rectangle(stamp, (x - 3, y - th - 3), (x + tw + 3, y + base + 3), 1, -1)
        cv2.putText(stamp, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 2, thickness, cv2.LINE_AA)
        bright, dark = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25)
        image = np.where(stamp == 1, bright, image)
        image = np.where(stamp == 2, dark if boxed else bright, image)
    # the mask is unchanged: a marker over the hand is still hand (masks have no holes)
    return image.astype(np.float32), mask


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One random variant of a working-scale (image, soft mask) pair, renormalised like inference."""
    image = image.astype(np.float32)
    mask = mask.astype(np.float32)
    if rng.random() < cfg.p_geometry:
        image, mask = _affine(image, mask, rng, cfg)
    if rng.random() < cfg.p_background:
        # exposure adds under the whole film: the soft-tissue edge keeps its natural ramp
        field = _background_field(image.shape, rng, cfg)
        image = field + (1 - field) * image
    if rng.random() < cfg.p_collimation:
        image, mask = _collimation(image, mask, rng)
    if rng.random() < cfg.p_border:
        image, mask = _borders(image, mask, rng)
    if rng.random() < cfg.p_frame:
        image, mask = _frame(image, mask, rng)
    if rng.random() < cfg.p_cassette:
        image, mask = _cassette_edge(image, mask, rng)
    if rng.random() < cfg.p_marker:
        image, mask = _markers(image, mask, rng, on_hand=rng.random() < cfg.p_marker_on_hand)
    image = np.clip(image, 0, 1)
    image = image ** rng.uniform(*cfg.gamma)
    image = (image - 0.5) * rng.uniform(*cfg.contrast) + 0.5 + rng.uniform(-0.1, 0.1)
    if rng.random() < cfg.p_invert:
        image = 1 - image
    if rng.random() < cfg.p_blur:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < cfg.p_noise:
        image = image + rng.normal(0, rng.uniform(0, cfg.noise_sigma), image.shape).astype(np.float32)
    return normalise(np.clip(image, 0, 1).astype(np.float32)), np.clip(mask, 0, 1)
