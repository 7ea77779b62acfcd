"""Drawing keypoints, the hand's skeleton and ROI boxes for inspection."""
from __future__ import annotations

import cv2
import numpy as np

from handprep.landmarks.points import FINGERS

_FINGER_BGR = {"thumb": (255, 128, 0), "index": (0, 200, 0), "middle": (0, 220, 255),
               "ring": (255, 0, 255), "little": (0, 0, 255)}
_ROI_BGR = (255, 255, 0)


def to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return image.copy()
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def draw_landmarks(canvas: np.ndarray, points: np.ndarray, scale: float = 1.0, offset=(0.0, 0.0),
                   radius: int | None = None) -> np.ndarray:
    """Draw the 21 keypoints (coloured per finger, wrist white) on a BGR canvas, in place.

    ``points`` are in the canvas's source pixels; ``scale`` and ``offset`` place them on the canvas.
    """
    pts = np.asarray(points, np.float64) * scale + np.asarray(offset)
    size = max(canvas.shape[:2])
    radius = radius or max(2, size // 160)
    thickness = max(1, size // 400)
    wrist = tuple(int(v) for v in pts[0])
    for finger, chain in FINGERS.items():
        line = [wrist] + [tuple(int(v) for v in pts[i]) for i in chain]
        for a, b in zip(line[:-1], line[1:]):
            cv2.line(canvas, a, b, _FINGER_BGR[finger], thickness, cv2.LINE_AA)
        for p in line[1:]:
            cv2.circle(canvas, p, radius, _FINGER_BGR[finger], -1, cv2.LINE_AA)
    cv2.circle(canvas, wrist, radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def draw_boxes(canvas: np.ndarray, boxes: dict[str, tuple[float, float, float, float]], scale: float = 1.0,
               offset=(0.0, 0.0), labels: bool = True) -> np.ndarray:
    """Draw named boxes (x0, y0, x1, y1 in source pixels) on a BGR canvas, in place."""
    thickness = max(1, max(canvas.shape[:2]) // 500)
    for name, (x0, y0, x1, y1) in boxes.items():
        a = (int(x0 * scale + offset[0]), int(y0 * scale + offset[1]))
        b = (int(x1 * scale + offset[0]), int(y1 * scale + offset[1]))
        cv2.rectangle(canvas, a, b, _ROI_BGR, thickness, cv2.LINE_AA)
        if labels:
            cv2.putText(canvas, name, (a[0] + 2, a[1] + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, _ROI_BGR, 1, cv2.LINE_AA)
    return canvas


def overlay(image: np.ndarray, points: np.ndarray | None, text: str = "", max_side_px: int = 1024,
            boxes: dict | None = None) -> np.ndarray:
    """A downsized BGR copy of the radiograph with keypoints (and boxes) drawn: for review."""
    scale = min(1.0, max_side_px / max(image.shape[:2]))
    small = cv2.resize(to_bgr(image), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if points is not None:
        draw_landmarks(small, points, scale)
    if boxes:
        draw_boxes(small, boxes, scale)
    if text:
        cv2.putText(small, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(small, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (80, 255, 80), 1, cv2.LINE_AA)
    return small


LANDMARK_STAGES = ("orient", "handedness", "crop_hand", "rois")


def draw_on_cell(cell: np.ndarray, stage_name: str, image: np.ndarray, mask: np.ndarray | None,
                 params: dict) -> None:
    """Contact-sheet cell of a landmark stage: its keypoints (and ROI boxes after ``rois``), in place.

    The cell shows ``image`` letterboxed into a square; the keypoints come from the stages'
    per-process memo, so drawing costs no new detection.
    """
    from handprep.landmarks.anatomy import roi_boxes
    from handprep.landmarks.stages import landmarks_for
    from handprep.stages.geometry import letterbox_box

    found = landmarks_for(image, mask, params.get("task"), params.get("min_confidence", 0.3))
    if not found.found:
        return
    scale, _, _, top, left = letterbox_box(*image.shape[:2], cell.shape[0])
    draw_landmarks(cell, found.points, scale, (left, top), radius=2)
    if stage_name == "rois":
        draw_boxes(cell, roi_boxes(found.points, params.get("scale", 1.0)), scale, (left, top), labels=False)
