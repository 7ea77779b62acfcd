"""What the keypoints say about the hand: bone-age regions of interest and QA flags."""
from __future__ import annotations

import cv2
import numpy as np

from handprep.landmarks.detect import HandLandmarks, inside_fraction
from handprep.landmarks.points import FINGERS, MASK_RATIO_RANGE, MIDDLE_MCP, WRIST, mask_ratio
from handprep.landmarks.render import largest_component

# name: (anchor keypoints averaged, shift along wrist→middle-MCP in units of that length, side in those units)
ROI_LAYOUT = {
    "radius_ulna": ([WRIST], -0.25, 0.6),
    "carpals": ([WRIST], 0.2, 0.6),
    "thumb_mcp": ([2], 0.0, 0.3),
    "thumb_ip": ([3], 0.0, 0.25),
    "middle_mcp": ([9], 0.0, 0.3),
    "middle_pip": ([10], 0.0, 0.25),
    "middle_dip": ([11], 0.0, 0.25),
    "little_mcp": ([17], 0.0, 0.3),
    "little_pip": ([18], 0.0, 0.25),
    "little_dip": ([19], 0.0, 0.25),
}
FINGER_MIN_LENGTH = 0.35  # a finger shorter than this × (wrist → middle MCP) is folded or missing


def roi_boxes(points: np.ndarray, scale: float = 1.0) -> dict[str, tuple[float, float, float, float]]:
    """Square boxes (x0, y0, x1, y1, image pixels) of the regions bone-age methods score.

    Sizes and offsets are in units of the wrist → middle-MCP length, so they follow the hand's
    size; ``scale`` grows every box. Boxes are axis-aligned: run ``orient`` first for upright
    crops.
    """
    axis = points[MIDDLE_MCP] - points[WRIST]
    unit = float(np.linalg.norm(axis))
    boxes = {}
    for name, (anchors, shift, side) in ROI_LAYOUT.items():
        centre = points[anchors].mean(axis=0) + shift * axis
        half = side * unit * scale / 2
        boxes[name] = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return boxes


def crop_box(image: np.ndarray, box: tuple[float, float, float, float], size_px: int) -> np.ndarray:
    """The box cut out of the image (zero outside it) and resized to size_px²."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    side = max(1, x1 - x0, y1 - y0)
    h, w = image.shape[:2]
    out = np.zeros((side, side), image.dtype)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    method = cv2.INTER_AREA if side > size_px else cv2.INTER_LINEAR
    return cv2.resize(out, (size_px, size_px), interpolation=method)


def count_fingers(points: np.ndarray, mask: np.ndarray | None, tolerance_px: float) -> int:
    """Fingers that are long enough and (with a mask) lie on the hand."""
    unit = float(np.linalg.norm(points[MIDDLE_MCP] - points[WRIST]))
    count = 0
    for chain in FINGERS.values():
        length = float(np.linalg.norm(points[chain[-1]] - points[chain[0]]))
        on_hand = mask is None or inside_fraction(points[chain[1:]], mask, tolerance_px) == 1.0
        count += int(length >= FINGER_MIN_LENGTH * unit and on_hand)
    return count


def qa(found: HandLandmarks, mask: np.ndarray | None) -> dict:
    """QA numbers and flags for the manifest.

    ``found`` 1/0; ``fingers`` (0–5); ``outside`` keypoints off the hand mask; ``mask_ratio``
    hand-mask area / hand size²; ``qa``: ``+``-joined flags (``not_found``, ``fingers_lt5``,
    ``outside_mask``, ``mask_area``), empty when all is well.
    """
    if not found.found:
        return {"found": 0, "score": 0.0, "fingers": 0, "outside": "", "mask_ratio": "", "qa": "not_found"}
    points = found.points
    hand = largest_component(mask) if mask is not None and np.any(mask) else None
    flags = []
    if hand is not None:
        x, y, w, h = cv2.boundingRect(cv2.findNonZero(hand))
        tolerance = 0.03 * max(w, h)
        outside = int(round((1 - inside_fraction(points, hand, tolerance)) * len(points)))
        ratio = mask_ratio(points, np.count_nonzero(hand))
    else:
        tolerance, outside, ratio = 0.0, 0, float("nan")
    fingers = count_fingers(points, hand, tolerance)
    if fingers < 5:
        flags.append("fingers_lt5")
    if outside:
        flags.append("outside_mask")
    if hand is not None and not MASK_RATIO_RANGE[0] <= ratio <= MASK_RATIO_RANGE[1]:
        flags.append("mask_area")
    return {"found": 1, "score": found.score, "fingers": fingers, "outside": outside if hand is not None else "",
            "mask_ratio": round(ratio, 3) if hand is not None else "", "qa": "+".join(flags)}
