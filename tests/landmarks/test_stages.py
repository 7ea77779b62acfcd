"""orient / handedness / crop_hand / rois on keypoint phantoms, QA flags, and ROI files from the runner."""
import csv

import cv2
import numpy as np
import pytest

from handprep.io import write_mask, write_png
from handprep.landmarks import stages as lm_stages
from handprep.landmarks.anatomy import ROI_LAYOUT, qa
from handprep.landmarks.detect import HandLandmarks
from handprep.landmarks.points import axis_angle, patient_side
from handprep.landmarks.transform import rotated_canvas
from handprep.pipeline.config import load_config
from handprep.pipeline.runner import run_pipeline
from handprep.stages.registry import get_stage
from handprep.synth import HAND_TEMPLATE
from tests.landmarks.conftest import CASES


def fresh(image, mask):
    """Landmarks detected anew (not the memo's moved copy)."""
    lm_stages._MEMO.clear()
    return lm_stages.landmarks_for(image, mask)


@pytest.mark.parametrize("index", [1, 4, 5])  # 35° right, −120° left, 175° right
def test_orient_turns_the_hand_upright(phantoms, index):
    phantom = phantoms[index]
    out = get_stage("orient").func(phantom.image, phantom.mask)
    assert out.info["found"] == 1 and out.info["qa"] == ""
    assert out.mask.shape == out.image.shape and out.image.shape != phantom.image.shape  # canvas grew
    upright = fresh(out.image, out.mask)
    assert abs(axis_angle(upright.points)) <= 5  # the orientation tolerance
    assert abs((out.info["angle_deg"] + CASES[index][0] + 180) % 360 - 180) <= 5
    turn = rotated_canvas(*phantom.image.shape, out.info["angle_deg"])[0]
    moved = lm_stages.landmarks_for(phantom.image, phantom.mask).moved(turn)  # what orient passed on
    assert np.abs(moved.points - upright.points).max() < 0.05 * np.ptp(upright.points[:, 1])
    a = np.radians(out.info["angle_deg"])  # the manifest's numbers map input points to the output
    x, y = phantom.meta["keypoints"].T
    mapped = np.stack([np.cos(a) * x + np.sin(a) * y + out.info["pad_x"],
                       -np.sin(a) * x + np.cos(a) * y + out.info["pad_y"]], axis=1)
    assert np.allclose(mapped, turn.apply(phantom.meta["keypoints"]), atol=0.01)


def test_handedness_mirrors_right_hands_only(phantoms):
    left, right = phantoms[0], phantoms[1]
    kept = get_stage("handedness").func(left.image, left.mask)
    assert kept.info["side"] == "left" and kept.info["flipped"] == 0 and kept.image is left.image
    flipped = get_stage("handedness").func(right.image, right.mask)
    assert flipped.info["side"] == "right" and flipped.info["flipped"] == 1
    assert np.array_equal(flipped.image, right.image[:, ::-1])
    assert fresh(flipped.image, flipped.mask).handedness == "left"


def test_crop_hand_keeps_every_keypoint_and_the_mask(phantoms):
    phantom = phantoms[6]
    out = get_stage("crop_hand").func(phantom.image, phantom.mask, margin=0.05)
    x0, y0 = out.info["crop_x0"], out.info["crop_y0"]
    assert out.image.shape == (out.info["crop_y1"] - y0, out.info["crop_x1"] - x0)
    assert out.image.size < phantom.image.size
    truth = phantom.meta["keypoints"] - [x0, y0]
    assert (truth >= 0).all() and (truth[:, 0] < out.image.shape[1]).all() and (truth[:, 1] < out.image.shape[0]).all()
    assert np.count_nonzero(out.mask) == np.count_nonzero(phantom.mask[y0:out.info["crop_y1"], x0:out.info["crop_x1"]])


def test_rois_are_fixed_size_crops_at_the_joints(phantoms):
    phantom = phantoms[0]
    out = get_stage("rois").func(phantom.image, phantom.mask, size_px=64)
    assert set(out.extras) == set(ROI_LAYOUT) and out.info["count"] == 10
    assert all(crop.shape == (64, 64) and crop.dtype == np.uint8 for crop in out.extras.values())
    assert out.image is phantom.image
    # a joint crop is centred on soft tissue with bone, not on background
    assert out.extras["middle_mcp"][24:40, 24:40].mean() > phantom.image[phantom.mask == 0].mean() + 40


def test_qa_flags():
    points = HAND_TEMPLATE * 200 + [200, 300]
    hand = HandLandmarks(True, points, 0.9, patient_side(points))
    mask = np.zeros((400, 400), np.uint8)
    cv2.fillPoly(mask, [cv2.convexHull(points.astype(np.float32)).astype(np.int32)], 255)
    cv2.circle(mask, (200, 330), 40, 255, -1)
    good = qa(hand, mask)
    assert good["qa"] == "" and good["fingers"] == 5 and good["outside"] == 0
    cut = mask.copy()
    cut[:, 260:] = 0  # the thumb side is missing from the mask
    flags = qa(hand, cut)
    assert "fingers_lt5" in flags["qa"] and "outside_mask" in flags["qa"] and flags["fingers"] < 5
    assert "mask_area" in qa(hand, np.full((400, 400), 255, np.uint8))["qa"]  # mask far too big for the hand
    assert qa(HandLandmarks(False, reason="none"), mask)["qa"] == "not_found"


def test_not_found_passes_the_image_on_flagged():
    blank = np.full((200, 160), 30, np.uint8)
    for name in ("orient", "handedness", "crop_hand", "rois"):
        out = get_stage(name).func(blank, None)
        assert out.info["qa"] == "not_found" and out.image is blank
    assert get_stage("rois").func(blank, None).extras == {}


def test_runner_writes_roi_crops_and_lists_them(phantoms, tmp_path, write_pipeline):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in (1, 7):
        write_png(images / f"kp{i}.png", phantoms[i].image)
        write_mask(masks / f"kp{i}.png", phantoms[i].mask)
    write_png(images / "blank.png", np.full((200, 160), 30, np.uint8))
    write_mask(masks / "blank.png", np.zeros((200, 160), np.uint8))
    pipeline = write_pipeline({"input": {"images": str(images), "masks": str(masks)}, "output": str(tmp_path / "out"),
                               "workers": 1, "stages": ["orient", "handedness", "crop_hand",
                                                        {"rois": {"size_px": 32}}, {"resize": {"size_px": 96}}]})
    summary = run_pipeline(load_config(pipeline), progress=False)
    assert summary.counts["ok"] == 3
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "out" / "manifest.csv"))}
    assert rows["kp1"]["handedness.flipped"] == "1" and rows["kp7"]["handedness.flipped"] == "0"
    assert rows["blank"]["orient.qa"] == "not_found" and rows["blank"]["rois"] == ""
    listed = rows["kp1"]["rois"].split(";")
    assert len(listed) == 10 and all((tmp_path / "out" / p).is_file() for p in listed)
    index = list(csv.DictReader(open(tmp_path / "out" / "dataset" / "index.csv")))
    assert {r["id"]: r["rois"] for r in index}["kp7"].count(";") == 9
