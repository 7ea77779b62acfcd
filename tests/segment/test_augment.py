"""Augmentation moves image and mask together, and frames never end up inside the mask."""
import numpy as np

from handprep.segment.augment import AugmentConfig, _cassette_edge, _frame, augment

GEOMETRY_ONLY = AugmentConfig(p_geometry=1.0, p_hflip=0.5, p_vflip=0.5, p_background=0, p_collimation=0,
                              p_border=0, p_frame=0, p_cassette=0, p_marker=0, p_invert=0, gamma=(1, 1),
                              contrast=(1, 1), p_blur=0, p_noise=0)


def hand_like(h=120, w=90):
    mask = np.zeros((h, w), np.float32)
    mask[30:110, 25:65] = 1
    mask[10:40, 30:36] = 1  # a finger, so flips and rotations are not symmetric
    return mask


def test_geometry_moves_image_and_mask_together():
    mask = hand_like()
    image = 0.1 + 0.8 * mask  # the image is the mask: after any warp they must still coincide
    for seed in range(12):
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed), GEOMETRY_ONLY)
        assert out_image.dtype == np.float32 and out_image.shape == out_mask.shape == mask.shape
        # normalisation stretches the image; the hand is where the image is bright, exactly as in the mask
        hand = out_mask > 0.5
        assert hand.sum() > 0.3 * mask.sum()
        assert np.mean((out_image > 0.5) == hand) > 0.99, seed


def test_full_augmentation_keeps_mask_soft_and_in_range():
    mask = hand_like()
    image = 0.1 + 0.8 * mask
    for seed in range(20):
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed))
        assert 0 <= out_mask.min() and out_mask.max() <= 1 and 0 <= out_image.min() and out_image.max() <= 1
        assert out_image.dtype == np.float32


def test_frames_are_never_hand_and_cassette_edges_never_cut_it():
    mask = hand_like()
    image = 0.1 + 0.8 * mask
    for seed in range(10):
        framed, framed_mask = _frame(image, mask, np.random.default_rng(seed))
        changed = framed != image
        assert changed.any() and (framed_mask[changed] == 0).all()  # whatever the frame covers is not hand
        edged, edged_mask = _cassette_edge(image, mask, np.random.default_rng(seed))
        assert np.array_equal(edged_mask, mask) and np.array_equal(edged[mask > 0.5], image[mask > 0.5])


def test_float32_under_numpy2_promotion_rules():
    """numpy 2 (GPU machines) promotes float32 arrays with float64 scalars to float64; the
    augmentation and the inference normalisation must stay float32 under those rules too."""
    from handprep.segment.infer import normalise

    set_state = getattr(np, "_set_promotion_state", None)
    previous = np._get_promotion_state() if set_state else None
    if set_state:
        set_state("weak")  # NEP 50: numpy 2's rules, available in numpy 1.24+
    try:
        mask = hand_like()
        image = 0.1 + 0.8 * mask
        for seed in range(6):
            out_image, _ = augment(image, mask, np.random.default_rng(seed))
            assert out_image.dtype == np.float32, seed
        assert normalise(np.linspace(0, 1, 100, dtype=np.float64).reshape(10, 10)).dtype == np.float32
        assert normalise(np.arange(100, dtype=np.uint16).reshape(10, 10)).dtype == np.float32
    finally:
        if set_state:
            set_state(previous)
