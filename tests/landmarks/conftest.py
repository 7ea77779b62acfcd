"""Keypoint phantoms with known rotation and side, and a shared MediaPipe detector."""
from __future__ import annotations

import pytest

from handprep.synth import keypoint_phantom

# (rotation counter-clockwise in degrees, patient's side): all quadrants, both hands
CASES = [(0, "left"), (35, "right"), (-50, "left"), (95, "right"), (-120, "left"), (175, "right"),
         (12, "right"), (-20, "left")]


@pytest.fixture(scope="session")
def phantoms():
    return [keypoint_phantom(seed=i, rotation_deg=rot, side=side) for i, (rot, side) in enumerate(CASES)]


@pytest.fixture(scope="session")
def detector():
    from handprep.landmarks.detect import get_detector

    return get_detector()
