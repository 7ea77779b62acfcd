"""Segmenter masks with contrast fallbacks: a junk first mask is replaced by a plausible one."""
import numpy as np

from handprep.landmarks.batch import to_row
from handprep.landmarks.masks import boosted, detect_with_segmenter, is_plausible


class ScriptedSegmenter:
    """Returns the given masks in turn (stands in for the U-Net)."""

    def __init__(self, masks):
        self.masks, self.calls = list(masks), []

    def mask(self, image):
        self.calls.append(image)
        return self.masks[len(self.calls) - 1]


def test_junk_mask_falls_back_to_a_boosted_segmentation(phantoms, detector):
    phantom = phantoms[2]
    junk = np.full_like(phantom.mask, 255)  # "the whole film is hand": any hand found is far too small
    segmenter = ScriptedSegmenter([junk, phantom.mask, phantom.mask])
    found, mask, source = detect_with_segmenter(detector, phantom.image, segmenter)
    assert source == "segmenter+clahe" and mask is not junk and found.found and is_plausible(found, mask)
    assert segmenter.calls[1].dtype == np.uint8 and not np.array_equal(segmenter.calls[1], phantom.image)


def test_first_plausible_mask_is_kept(phantoms, detector):
    segmenter = ScriptedSegmenter([phantoms[0].mask])
    found, _, source = detect_with_segmenter(detector, phantoms[0].image, segmenter)
    assert source == "segmenter" and len(segmenter.calls) == 1 and found.handedness == "left"


def test_implausible_hand_is_reported_not_found(phantoms, detector):
    phantom = phantoms[0]
    found = detector.detect(phantom.image, phantom.mask)
    row = to_row("x", "x.png", found, "file", 0.1, "mask_area")
    assert row["found"] == 0 and "implausible" in row["reason"] and row["x0"] != "" and row["handedness"] == ""
    assert to_row("x", "x.png", found, "file", 0.1, "")["found"] == 1


def test_boosts_stretch_contrast():
    image = np.tile(np.linspace(100, 120, 64).astype(np.uint8), (64, 1))
    for kind in ("clahe", "gamma"):
        out = boosted(image, kind)
        assert out.dtype == np.uint8 and int(out.max()) - int(out.min()) > 150
