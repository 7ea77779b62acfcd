import numpy as np
import pytest

from handprep.stages.mask import dilate, erode, fill_contours, largest_component, overlay, threshold_mask
from handprep.stages.registry import StageError
from handprep.synth import phantom


def ring(size=21, outer=8, inner=4):
    yy, xx = np.mgrid[:size, :size] - size // 2
    r = np.hypot(yy, xx)
    return np.where((r <= outer) & (r > inner), 255, 0).astype(np.uint8)


def test_fill_contours_fills_holes_exactly():
    mask = ring()
    filled = fill_contours(mask)
    yy, xx = np.mgrid[:21, :21] - 10
    disc = np.hypot(yy, xx) <= 8
    assert np.array_equal(filled > 0, disc)
    assert set(np.unique(filled)) == {0, 255}


def test_fill_contours_threshold_and_small_regions():
    mask = np.zeros((40, 40), np.uint8)
    mask[5:25, 5:25] = 200  # big, above threshold
    mask[30:33, 30:33] = 200  # small (9 px vs 400 px)
    mask[30:35, 5:10] = 100  # below threshold
    out = fill_contours(mask, threshold=127)
    assert out[10, 10] == 255 and out[31, 31] == 255 and out[32, 7] == 0
    out = fill_contours(mask, min_area_ratio=0.1)
    assert out[10, 10] == 255 and out[31, 31] == 0
    assert fill_contours(np.zeros((5, 5), np.uint8)).max() == 0


def test_dilate_11x11_grows_a_point_to_a_square():
    mask = np.zeros((31, 31), np.uint8)
    mask[15, 15] = 255
    out = dilate(mask)
    assert (out > 0).sum() == 121 and out[10:21, 10:21].min() == 255
    assert np.array_equal(dilate(mask, kernel=3, iterations=2) > 0, dilate(mask, kernel=5) > 0)
    assert np.array_equal(erode(dilate(mask, kernel=3), kernel=3), mask)


def test_overlay_keeps_pixels_under_mask():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4) + 1
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255
    out = overlay(image, mask)
    assert out[1:3, 1:3].tolist() == image[1:3, 1:3].tolist() and out.sum() == image[1:3, 1:3].sum()
    out16 = overlay(image.astype(np.uint16) * 1000, mask)
    assert out16.dtype == np.uint16 and out16[1, 1] == 6000


def test_overlay_refuses_mask_of_other_size():
    with pytest.raises(StageError, match="mask is 3×4 px but the image is 4×4 px"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 3), np.uint8))


def test_largest_component():
    mask = np.zeros((10, 10), np.uint8)
    mask[0:2, 0:2] = 255
    mask[5:9, 5:9] = 255
    out = largest_component(mask)
    assert out[0, 0] == 0 and out[6, 6] == 255
    assert largest_component(np.zeros((3, 3), np.uint8)).max() == 0


def test_threshold_mask_on_clean_phantom():
    p = phantom(seed=5, border=False, marker=False)
    pred = threshold_mask(p.image) > 0
    truth = p.mask > 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice > 0.95


def test_overlay_refuses_an_empty_mask():
    with pytest.raises(StageError, match="mask is empty: no hand found"):
        overlay(np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8))


def test_even_kernels_are_refused_before_any_image():
    from handprep.stages.registry import ParamError, get_stage

    for name in ("dilate", "erode"):
        with pytest.raises(ParamError, match="must be odd"):
            get_stage(name).check_params({"kernel": 10})
        assert get_stage(name).check_params({"kernel": 11})["kernel"] == 11
