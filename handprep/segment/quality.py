"""Quality numbers and flags for a predicted hand mask, so a user can find the doubtful ones.

A segmenter that leaks into a scanner frame leaves a mask running along the film edge; one
that loses a faint hand leaves a tiny area or several pieces; an unsure one has a probability
map full of middling values. Each check gives a number and a flag:

``border_contact``  largest share of one image side along which the mask comes within
                    ``border_margin`` of that side (a forearm leaving the film covers part
                    of one side; a frame leak covers nearly all of it)
``area``            mask area as a share of the image
``components``      regions larger than ``component_min`` of the image (a hand is one)
``confidence``      mean of |2p − 1| over pixels the model gives p > 0.05 (1: sure everywhere)

Defaults were set on the training masks and validation predictions, never on the test split.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class QualityLimits:
    border_margin: float = 0.03
    max_border_contact: float = 0.7
    area: tuple[float, float] = (0.04, 0.75)
    component_min: float = 0.01
    max_components: int = 1
    min_confidence: float = 0.75


def border_contact(mask: np.ndarray, margin: float = 0.03) -> float:
    """Largest share of a side (top, bottom, left, right) where the mask is within ``margin`` of it."""
    hand = mask > 0
    h, w = hand.shape
    my, mx = max(1, round(margin * h)), max(1, round(margin * w))
    sides = (hand[:my].any(0), hand[-my:].any(0), hand[:, :mx].any(1), hand[:, -mx:].any(1))
    return float(max(side.mean() for side in sides))


def large_components(mask: np.ndarray, min_fraction: float = 0.01) -> int:
    """Connected regions (8-connected) larger than ``min_fraction`` of the image."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] > min_fraction * mask.size).sum())


def confidence(prob: np.ndarray) -> float:
    """Mean |2p − 1| where the model sees any hand (p > 0.05); 0 when it sees none."""
    candidate = prob > 0.05
    return float(np.abs(2 * prob[candidate] - 1).mean()) if candidate.any() else 0.0


def mask_quality(mask: np.ndarray, prob: np.ndarray | None = None, limits: QualityLimits = QualityLimits()) -> dict:
    """Numbers and flags for one mask (and its probability map, when known).

    ``flags`` lists the failed checks (comma-separated, empty when none); ``doubtful`` is
    true when any check failed.
    """
    numbers = {"border_contact": round(border_contact(mask, limits.border_margin), 4),
               "area": round(float((mask > 0).mean()), 5),
               "components": large_components(mask, limits.component_min)}
    flags = []
    if numbers["border_contact"] > limits.max_border_contact:
        flags.append("border_edge")
    if not limits.area[0] <= numbers["area"] <= limits.area[1]:
        flags.append("area")
    if numbers["components"] > limits.max_components:
        flags.append("components")
    if prob is not None:
        numbers["confidence"] = round(confidence(prob), 4)
        if numbers["confidence"] < limits.min_confidence:
            flags.append("confidence")
    return {**numbers, "flags": ",".join(flags), "doubtful": bool(flags)}
