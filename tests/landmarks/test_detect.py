"""MediaPipe on keypoint phantoms: found, right side, axis within 5°, keypoints mapped back from any view."""
import numpy as np
import pytest

from handprep.landmarks.detect import LandmarkDetector
from handprep.landmarks.points import axis_angle, hand_size
from handprep.synth import HAND_TEMPLATE
from tests.landmarks.conftest import CASES


def keypoint_error(found, phantom) -> float:
    truth = phantom.meta["keypoints"]
    return float(np.linalg.norm(found.points - truth, axis=1).mean() / hand_size(truth))


def test_every_phantom_found_with_its_side_and_orientation(phantoms, detector):
    for (rotation, side), phantom in zip(CASES, phantoms):
        found = detector.detect(phantom.image, phantom.mask)
        assert found.found, f"rotation {rotation}, {side}: {found.reason}"
        assert found.handedness == side, f"rotation {rotation}: {found.handedness} instead of {side}"
        # the phantom was turned counter-clockwise by `rotation`: orient must turn it back by −rotation
        truth = axis_angle(phantom.meta["keypoints"])
        assert (axis_angle(found.points) - truth + 180) % 360 - 180 == pytest.approx(0, abs=5)
        upright = axis_angle(HAND_TEMPLATE * [1 if side == "left" else -1, 1])  # ≈ ±1°: the template's own tilt
        assert (truth - (upright - rotation) + 180) % 360 - 180 == pytest.approx(0, abs=1e-6)
        assert keypoint_error(found, phantom) < 0.05
        assert 0 < found.score <= 1 and found.inside == 1.0


@pytest.mark.parametrize("turns,mirrored", [((1,), (False,)), ((2,), (True,)), ((3,), (True,))])
def test_turned_and_mirrored_views_map_back_to_the_original(phantoms, turns, mirrored):
    phantom = phantoms[0]
    detector = LandmarkDetector(renderings=("silhouette",), margins=(0.25,), turns=turns, mirrors=mirrored)
    found = detector.detect(phantom.image, phantom.mask)
    assert found.found and found.turns == turns[0] and found.mirrored == mirrored[0]
    assert keypoint_error(found, phantom) < 0.05
    assert found.handedness == "left"  # a mirrored view does not change the patient's side


def test_no_hand_gets_a_reason(detector):
    blank = np.random.default_rng(0).normal(40, 3, (300, 240)).clip(0, 255).astype(np.uint8)
    lean = LandmarkDetector(renderings=("plain",), margins=(0.1,), turns=(0,), mirrors=(False,))
    found = lean.detect(blank)
    assert not found.found and found.points is None and found.attempts == 1
    assert "no hand found" in found.reason and "mask" in found.reason
    full = detector.detect(blank, np.zeros_like(blank))  # an empty mask counts as none
    # silhouettes of a threshold mask, then plain and inverted: each 2 scales × 4 turns × 2 mirrors
    assert not full.found and full.attempts == 64


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown rendering 'xray'"):
        LandmarkDetector(renderings=("xray",))
    with pytest.raises(FileNotFoundError, match="hand_landmarker.task"):
        LandmarkDetector(task="/nonexistent/hand_landmarker.task")


def test_sixteen_bit_radiograph(phantoms, detector):
    phantom = phantoms[6]
    found = detector.detect(phantom.image.astype(np.uint16) * 257, phantom.mask)
    assert found.found and found.handedness == "right" and keypoint_error(found, phantom) < 0.05


def test_without_a_mask_a_threshold_mask_drives_the_silhouette(phantoms, detector):
    phantom = phantoms[1]
    found = detector.detect(phantom.image)
    assert found.found and found.rendering == "silhouette(threshold mask)" and found.handedness == "right"
    assert keypoint_error(found, phantom) < 0.05
