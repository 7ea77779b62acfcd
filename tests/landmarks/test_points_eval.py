"""Anatomy helpers and the keypoint-error metric on hand-computed cases."""
import numpy as np
import pytest

from handprep.landmarks.evaluate import ANNOTATED, keypoint_errors, summarise
from handprep.landmarks.points import axis_angle, hand_size, patient_side, thumb_side
from handprep.landmarks.transform import rotate_about
from handprep.synth import HAND_TEMPLATE


@pytest.mark.parametrize("angle", [0, 30, -75, 120, 180])
def test_axis_angle_undoes_a_known_rotation(angle):
    upright = HAND_TEMPLATE * 100 + 300
    base = axis_angle(upright)
    turned = rotate_about(tuple(upright[0]), angle).apply(upright)
    # turning the hand counter-clockwise by `angle` needs a turn of −angle to undo
    assert (axis_angle(turned) - base + angle + 180) % 360 - 180 == pytest.approx(0, abs=1e-6)


def test_side_of_the_thumb():
    left = HAND_TEMPLATE * 100 + 300  # the template is a left hand: thumb on the image's right
    right = left * [-1, 1]
    assert thumb_side(left) == 1 and patient_side(left) == "left"
    assert thumb_side(right) == -1 and patient_side(right) == "right"
    upside_down = rotate_about((300, 300), 180).apply(left)  # a turn is not a mirror
    assert patient_side(upside_down) == "left"
    assert hand_size(left) == pytest.approx(100 * np.hypot(0.033, 0.999))


def test_keypoint_error_is_distance_over_hand_size():
    truth = {name: (0.0, 0.0) for name in ANNOTATED}
    truth["middle_tip"] = (0.0, -200.0)  # hand size 200 px
    predicted = np.zeros((21, 2))
    predicted[12] = (0, -200)
    predicted[4] = (30, 40)  # thumb tip 50 px off → 0.25
    errors = keypoint_errors(predicted, truth)
    assert errors["thumb_tip"] == pytest.approx(0.25)
    assert errors["middle_tip"] == 0 and errors["wrist"] == 0
    summary = summarise([errors])
    assert summary["finger_mean"] == pytest.approx(0.025)  # one of ten finger points is off by 0.25
    assert summary["finger_median"] == 0
