"""Quality flags on phantoms with a frame leak, a lost hand, stray pieces and an unsure model."""
import numpy as np

from handprep.segment.quality import border_contact, confidence, large_components, mask_quality
from handprep.synth import phantom


def test_a_good_phantom_mask_passes():
    case = phantom(seed=5, height=520, width=400, border=True)
    prob = np.where(case.mask > 0, 0.98, 0.01).astype(np.float32)
    quality = mask_quality(case.mask, prob)
    assert quality["flags"] == "" and not quality["doubtful"]
    assert quality["components"] == 1 and quality["confidence"] > 0.9
    assert quality["border_contact"] < 0.5  # the forearm leaves the film on one side only


def test_a_frame_leak_is_flagged():
    case = phantom(seed=5, height=520, width=400, border=True)
    leaked = case.mask.copy()
    leaked[:, :12] = 255  # the mask runs down the whole left frame band
    leaked[:12, :] = 255
    quality = mask_quality(leaked)
    assert "border_edge" in quality["flags"] and quality["doubtful"]
    assert border_contact(leaked) == 1.0


def test_lost_hand_stray_pieces_and_low_confidence():
    case = phantom(seed=6, height=520, width=400)
    tiny = np.zeros_like(case.mask)
    tiny[200:230, 200:230] = 255
    assert "area" in mask_quality(tiny)["flags"]
    pieces = case.mask.copy()
    pieces[10:60, 10:60] = 255  # a marker-sized blob apart from the hand (1.2 % of the image)
    assert large_components(pieces) == 2 and "components" in mask_quality(pieces)["flags"]
    unsure = np.where(case.mask > 0, 0.6, 0.3).astype(np.float32)
    assert confidence(unsure) == np.float32(np.abs(2 * unsure - 1).mean())
    assert "confidence" in mask_quality(case.mask, unsure)["flags"]
    assert confidence(np.zeros((10, 10), np.float32)) == 0.0
