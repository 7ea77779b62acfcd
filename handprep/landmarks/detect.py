"""MediaPipe Hands on radiographs: renderings × scales × quarter turns × mirrors until a hand is found.

Every view shown to MediaPipe is an exact affine map of the original radiograph (crop, resize,
quarter turn, mirror), so its landmarks go back to the original pixels by the inverse map.
Nothing downloads: the default backend is the legacy ``mediapipe.solutions.hands`` graph
whose models ship inside the mediapipe wheel; a ``hand_landmarker.task`` file selects the
Tasks API instead (for newer MediaPipe releases that dropped the legacy graph).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from handprep.landmarks.points import MASK_RATIO_RANGE, hand_size, mask_ratio, patient_side
from handprep.landmarks.render import NEEDS_MASK, RENDERINGS, largest_component, render
from handprep.landmarks.transform import Affine, crop_scale, mirror, quarter_turns

WORK_PX = 512  # MediaPipe's palm detector sees 192 px, its landmark model 224 px: 512 px is plenty
DEFAULT_MARGINS = (0.25, 0.1)
DEFAULT_TURNS = (0, 1, 3, 2)  # upright first; RSNA hands are rarely upside down


@dataclass
class HandLandmarks:
    """21 keypoints in MediaPipe's order, in the ORIGINAL image's pixels (x right, y down)."""

    found: bool
    points: np.ndarray | None = None  # 21×2 float64
    score: float = 0.0  # MediaPipe's hand score × fraction of keypoints inside the hand mask
    handedness: str = ""  # the patient's hand from the anatomy: "left" | "right"
    rendering: str = ""
    margin: float = 0.0
    turns: int = 0  # quarter turns (counter-clockwise) of the view that found the hand
    mirrored: bool = False
    inside: float = float("nan")  # fraction of keypoints inside the (tolerantly dilated) mask
    attempts: int = 0
    reason: str = ""

    @property
    def view(self) -> str:
        """How the finding view was made, e.g. ``silhouette m0.25 r90 mirrored``."""
        if not self.found:
            return ""
        return f"{self.rendering} m{self.margin:g} r{90 * self.turns}" + (" mirrored" if self.mirrored else "")

    def moved(self, affine: Affine) -> "HandLandmarks":
        """The same finding after the image was moved by ``affine`` (rotation, flip, crop)."""
        if self.points is None:
            return self
        points = affine.apply(self.points)
        return HandLandmarks(**{**self.__dict__, "points": points, "handedness": patient_side(points)})


class _LegacyHands:
    """mediapipe.solutions.hands (bundled models, static images)."""

    def __init__(self, min_confidence: float, complexity: int):
        import mediapipe as mp

        self._hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1,
                                               model_complexity=complexity, min_detection_confidence=min_confidence)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        result = self._hands.process(rgb)
        if not result.multi_hand_landmarks:
            return None
        points = np.array([[p.x, p.y] for p in result.multi_hand_landmarks[0].landmark])
        return points, float(result.multi_handedness[0].classification[0].score)


class _TaskHands:
    """The Tasks API with a ``hand_landmarker.task`` bundle."""

    def __init__(self, task_path: str, min_confidence: float):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=task_path), running_mode=vision.RunningMode.IMAGE,
            num_hands=1, min_hand_detection_confidence=min_confidence, min_hand_presence_confidence=min_confidence)
        self._landmarker = vision.HandLandmarker.create_from_options(options)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        if not result.hand_landmarks:
            return None
        points = np.array([[p.x, p.y] for p in result.hand_landmarks[0]])
        return points, float(result.handedness[0][0].score)


def _box(mask: np.ndarray | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (end exclusive) of the hand mask, or the whole image."""
    if mask is not None:
        points = cv2.findNonZero(mask)
        if points is not None:
            x, y, w, h = cv2.boundingRect(points)
            return x, y, x + w, y + h
    return 0, 0, shape[1], shape[0]


def square_view(image: np.ndarray, mask: np.ndarray | None, margin: float,
                work_px: int = WORK_PX) -> tuple[np.ndarray, np.ndarray | None, Affine]:
    """The hand's box grown by ``margin`` per side, made square, resized to work_px²."""
    x0, y0, x1, y1 = _box(mask, image.shape)
    side = max(8, int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))))
    left, top = (x0 + x1 - side) // 2, (y0 + y1 - side) // 2
    pad = ((max(0, -top), max(0, top + side - image.shape[0])), (max(0, -left), max(0, left + side - image.shape[1])))

    def cut(array: np.ndarray, fill: int, interpolation: int) -> np.ndarray:
        padded = np.pad(array, pad, constant_values=fill)
        y, x = top + pad[0][0], left + pad[1][0]
        return cv2.resize(padded[y:y + side, x:x + side], (work_px, work_px), interpolation=interpolation)

    shrink = cv2.INTER_AREA if side > work_px else cv2.INTER_LINEAR
    fill = int(np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])))
    small = cut(image, fill, shrink)
    small_mask = None if mask is None else np.where(cut(mask, 0, shrink) > 127, 255, 0).astype(np.uint8)
    return small, small_mask, crop_scale(left, top, work_px / side)


def inside_fraction(points: np.ndarray, mask: np.ndarray, tolerance_px: float) -> float:
    """Share of points on the mask, allowing ``tolerance_px`` outside its edge."""
    distance = cv2.distanceTransform(np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    h, w = mask.shape
    cols = np.clip(points[:, 0].astype(int), 0, w - 1)
    rows = np.clip(points[:, 1].astype(int), 0, h - 1)
    in_frame = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    return float(np.mean(in_frame & (distance[rows, cols] <= tolerance_px)))


class LandmarkDetector:
    """Finds 21 hand keypoints in a radiograph, trying views until one is plausible.

    Parameters
    ----------
    task : path to a ``hand_landmarker.task`` (Tasks API) or None for the bundled legacy graph.
    min_confidence : MediaPipe's palm-detection threshold (0–1).
    renderings : views to try, in order (``render.RENDERINGS``); silhouettes are skipped
        when there is no mask.
    margins : the hand box is grown by these fractions per side (the view's scale).
    turns : quarter turns to try (0, 1, 2, 3 → 0°, 90°, 180°, 270° counter-clockwise).
    mirrors : for each view, whether to show it as it is (False) and/or mirrored (True), in order.
    min_inside : a finding with at least this share of keypoints on the hand mask, and a hand
        big enough for the mask (``points.MASK_RATIO_RANGE``), stops the search; otherwise
        the best-scoring finding is kept (and the QA flags it).
    """

    def __init__(self, task: str | os.PathLike | None = None, min_confidence: float = 0.3, complexity: int = 1,
                 renderings: tuple[str, ...] = RENDERINGS, margins: tuple[float, ...] = DEFAULT_MARGINS,
                 turns: tuple[int, ...] = DEFAULT_TURNS, mirrors: tuple[bool, ...] = (False, True),
                 min_inside: float = 0.9):
        unknown = [r for r in renderings if r not in RENDERINGS]
        if unknown:
            raise ValueError(f"unknown rendering {unknown[0]!r}; valid: {', '.join(RENDERINGS)}")
        if task is not None and not Path(task).is_file():
            raise FileNotFoundError(f"MediaPipe task file {task} not found: pass a hand_landmarker.task "
                                    "or leave it out to use the models bundled with mediapipe")
        self.task = None if task is None else str(task)
        self._backend = _TaskHands(self.task, min_confidence) if task else _LegacyHands(min_confidence, complexity)
        self.renderings, self.margins, self.turns = tuple(renderings), tuple(margins), tuple(turns)
        self.mirrors, self.min_inside = tuple(mirrors), min_inside

    def _views(self, image: np.ndarray, mask: np.ndarray | None, only: tuple[str, ...] | None = None):
        """(rendering, margin, turns, mirrored, rgb view, affine original → view) in search order."""
        for kind in self.renderings:
            if (kind in NEEDS_MASK and mask is None) or (only is not None and kind not in only):
                continue
            for margin in self.margins:
                small, small_mask, affine = square_view(image, mask, margin)
                rgb = render(small, small_mask, kind)
                for turns in self.turns:
                    turned = np.ascontiguousarray(np.rot90(rgb, turns))
                    turned_affine = affine.then(quarter_turns(turns, *rgb.shape[:2]))
                    for mirrored in self.mirrors:
                        if mirrored:
                            yield (kind, margin, turns, True, np.ascontiguousarray(turned[:, ::-1]),
                                   turned_affine.then(mirror(turned.shape[1])))
                        else:
                            yield kind, margin, turns, False, turned, turned_affine

    def _search(self, image: np.ndarray, hand: np.ndarray | None,
                only: tuple[str, ...] | None = None) -> tuple[HandLandmarks | None, int, bool]:
        """Try views until a plausible hand: ``(best finding or None, views tried, plausible)``."""
        x0, y0, x1, y1 = _box(hand, image.shape)
        tolerance = 0.03 * max(x1 - x0, y1 - y0)
        best, best_key, attempts = None, None, 0
        hand_area = 0 if hand is None else np.count_nonzero(hand)
        for kind, margin, turns, mirrored, view, affine in self._views(image, hand, only):
            attempts += 1
            found = self._backend(view)
            if found is None:
                continue
            normalised, mp_score = found
            points = affine.invert(normalised * np.array([view.shape[1], view.shape[0]]))
            inside = inside_fraction(points, hand, tolerance) if hand is not None else float("nan")
            score = mp_score * (1.0 if hand is None else inside)
            # on the hand, and not a tiny "hand" on a marker inside a huge mask
            plausible = hand is None or (inside >= self.min_inside
                                         and mask_ratio(points, hand_area) <= MASK_RATIO_RANGE[1])
            if best is None or (plausible, score) > best_key:
                best_key = (plausible, score)
                best = HandLandmarks(True, points, round(score, 4), patient_side(points), kind, margin, turns,
                                     mirrored, inside)
            if plausible:
                return best, attempts, True
        return best, attempts, False

    def _threshold_hand(self, image: np.ndarray) -> np.ndarray | None:
        """A classical hand mask (background level + largest region) when no mask was given."""
        from handprep.stages.mask import threshold_mask  # here: handprep.stages imports this package

        hand = largest_component(threshold_mask(image, method="background"))
        return hand if np.any(hand) else None

    def detect(self, image: np.ndarray, mask: np.ndarray | None = None) -> HandLandmarks:
        """Landmarks of the hand in ``image`` (H×W uint8/uint16), using ``mask`` (0/255) if given.

        Without a mask, a classical threshold mask drives the silhouette renderings first
        (58 of 60 rsna-raw films, against 50 for the grey renderings alone); the whole image
        in its grey renderings comes next.
        """
        if image.ndim != 2:
            raise ValueError(f"expected a greyscale H×W image, got shape {image.shape}")
        hand = largest_component(mask) if mask is not None and np.any(mask) else None
        if hand is not None:
            best, attempts, _ = self._search(image, hand)
        else:
            best, attempts, plausible = None, 0, False
            crude = self._threshold_hand(image) if any(r in NEEDS_MASK for r in self.renderings) else None
            if crude is not None:
                best, attempts, plausible = self._search(image, crude, NEEDS_MASK)
                if best is not None:
                    best.rendering = f"{best.rendering}(threshold mask)"
            if not plausible:
                fallback, more, _ = self._search(image, None)
                attempts += more
                best = fallback or best
        if best is None:
            what = "with its mask" if hand is not None else "without a mask (a hand mask, e.g. from " \
                                                           "`handprep segment`, makes detection far likelier)"
            return HandLandmarks(False, attempts=attempts, reason=(
                f"no hand found in {attempts} views of the image {what}: renderings "
                f"{', '.join(self.renderings)}, quarter turns, mirrors; check that the image shows a hand"))
        best.attempts = attempts
        if hand_size(best.points) < 1.0:
            return HandLandmarks(False, attempts=attempts, reason="MediaPipe returned a degenerate hand (size < 1 px)")
        return best


@functools.lru_cache(maxsize=4)
def get_detector(task: str | None = None, min_confidence: float = 0.3) -> LandmarkDetector:
    """A per-process detector (MediaPipe graphs are slow to build)."""
    return LandmarkDetector(task, min_confidence)


def detect_landmarks(image: np.ndarray, mask: np.ndarray | None = None, task: str | None = None,
                     min_confidence: float = 0.3) -> HandLandmarks:
    """Convenience: :meth:`LandmarkDetector.detect` with a cached detector."""
    return get_detector(task, min_confidence).detect(image, mask)
