"""Exact 2-D affine maps between an original radiograph and the views shown to MediaPipe.

Points use continuous pixel coordinates: pixel (col, row) covers [col, col+1) × [row, row+1),
so a crop, a resize, a quarter turn and a mirror are all exact affine maps, and a view's
landmarks go back to the original by the inverse matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Affine:
    """``matrix`` (3×3) maps original (x, y, 1) to view coordinates."""

    matrix: np.ndarray

    @staticmethod
    def identity() -> "Affine":
        return Affine(np.eye(3))

    def then(self, other: "Affine") -> "Affine":
        """This map followed by ``other``."""
        return Affine(other.matrix @ self.matrix)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map N×2 points forward."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Map N×2 view points back to the original."""
        return Affine(np.linalg.inv(self.matrix)).apply(points)


def crop_scale(x0: float, y0: float, scale: float) -> Affine:
    """Crop at (x0, y0), then resize by ``scale``."""
    return Affine(np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale], [0, 0, 1.0]]))


def quarter_turns(k: int, height: int, width: int) -> Affine:
    """``np.rot90(view, k)`` (counter-clockwise) on an H×W view."""
    k %= 4
    matrix = np.eye(3)
    for _ in range(k):
        turn = np.array([[0, 1.0, 0], [-1.0, 0, width], [0, 0, 1]])  # (x, y) -> (y, W - x)
        matrix = turn @ matrix
        height, width = width, height
    return Affine(matrix)


def mirror(width: int) -> Affine:
    """Left-right mirror of a view ``width`` pixels wide."""
    return Affine(np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]]))


def rotate_about(center: tuple[float, float], angle_deg: float) -> Affine:
    """Counter-clockwise rotation by ``angle_deg`` (as seen on screen) about ``center``."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    cx, cy = center
    # y points down: a counter-clockwise turn on screen is x' = c·x + s·y, y' = −s·x + c·y
    m = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])
    shift = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    return Affine(np.linalg.inv(shift) @ m @ shift)


def warp(image: np.ndarray, affine: Affine, size: tuple[int, int], nearest: bool = False,
         border: int | tuple = 0) -> np.ndarray:
    """Resample ``image`` into a ``size`` (width, height) view under ``affine`` (continuous coords)."""
    # OpenCV's warpAffine works on pixel centres: shift by half a pixel on both sides
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    centred = np.linalg.inv(half) @ affine.matrix @ half
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, centred[:2], size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def rotated_canvas(height: int, width: int, angle_deg: float) -> tuple[Affine, tuple[int, int]]:
    """Rotation about the image centre onto a canvas big enough to keep every pixel."""
    turn = rotate_about((width / 2, height / 2), angle_deg)
    corners = turn.apply(np.array([[0, 0], [width, 0], [0, height], [width, height]]))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    size = (int(np.ceil(hi[0] - lo[0] - 1e-6)), int(np.ceil(hi[1] - lo[1] - 1e-6)))
    shift = Affine(np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1.0]]))
    return turn.then(shift), size
