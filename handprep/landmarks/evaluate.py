"""Keypoint error against hand annotations, as a fraction of hand size (wrist → middle fingertip).

Annotations (``landmarks/annotations_rsna_raw.csv``) hold 11 of MediaPipe's 21 keypoints —
wrist, the five fingertips and the five MCP joints — as ``<name>_x, <name>_y`` in original
image pixels, plus the patient's ``side``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from handprep.landmarks.points import NAMES

ANNOTATED = ["wrist", "thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip",
             "thumb_mcp", "index_mcp", "middle_mcp", "ring_mcp", "little_mcp"]
ANNOTATED_INDEX = [NAMES.index(n) for n in ANNOTATED]
FINGER_POINTS = ANNOTATED[1:]  # the ten finger keypoints


def read_annotations(path: str | Path) -> dict[str, dict]:
    """``{id: {"points": {name: (x, y)}, "side": "left"|"right"}}`` from an annotation CSV."""
    out = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            points = {n: (float(row[f"{n}_x"]), float(row[f"{n}_y"])) for n in ANNOTATED}
            out[row["id"]] = {"points": points, "side": row.get("side", "")}
    return out


def keypoint_errors(predicted: np.ndarray, truth: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Per-keypoint distance between a 21×2 prediction and annotated points, ÷ the annotated hand size.

    Hand size is the annotated wrist → middle fingertip distance.
    """
    size = float(np.hypot(*(np.subtract(truth["middle_tip"], truth["wrist"]))))
    if size <= 0:
        raise ValueError("annotated wrist and middle fingertip coincide: hand size is zero")
    return {name: float(np.hypot(*(predicted[NAMES.index(name)] - np.asarray(truth[name])))) / size
            for name in ANNOTATED}


def summarise(errors: list[dict[str, float]]) -> dict:
    """Median and mean of the ten finger keypoints' errors, the wrist's, and the worst case's."""
    if not errors:
        return {"cases": 0}
    fingers = np.array([[e[n] for n in FINGER_POINTS] for e in errors])
    wrist = np.array([e["wrist"] for e in errors])
    return {"cases": len(errors), "finger_median": float(np.median(fingers)), "finger_mean": float(fingers.mean()),
            "wrist_median": float(np.median(wrist)), "case_mean_worst": float(fingers.mean(axis=1).max())}
