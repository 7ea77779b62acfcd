import numpy as np
import pytest
from skimage.exposure import is_low_contrast

from handprep.stages.contrast import intensity_range, low_contrast, measure_contrast, percentiles


def test_percentiles_nearest_rank():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert percentiles(image, 1, 50, 99) == [0, 49, 98]
    assert percentiles(image, 100) == [99]
    image16 = (np.arange(100, dtype=np.uint16) * 600).reshape(10, 10)
    assert percentiles(image16, 50) == [49 * 600]


def test_percentiles_ignore_zero():
    image = np.array([[0, 0, 0, 10, 20, 30]], np.uint8)
    assert percentiles(image, 0.1, 100, ignore_zero=True) == [10, 30]
    assert percentiles(np.zeros((3, 3), np.uint8), 50, ignore_zero=True) == [0]


def test_intensity_range_by_detector_bits():
    assert intensity_range(np.zeros((2, 2), np.uint8)) == 255
    assert intensity_range(np.array([[0, 4095]], np.uint16)) == 4095
    assert intensity_range(np.array([[0, 40000]], np.uint16)) == 65535
    assert intensity_range(np.array([[0, 3]], np.uint16)) == 255


def test_constant_and_black_images_are_dropped_with_contrast_zero():
    for value in (0, 128):
        verdict = low_contrast(np.full((64, 64), value, np.uint8))
        assert not verdict.keep and verdict.metrics["contrast"] == 0
        assert "low contrast: 0.0000 < fraction_threshold 0.05" in verdict.reason


def test_known_contrast_and_threshold():
    # 1 % of pixels at 0, 98 % at 100, 1 % at 200 → p1..p99 = 0..100? nearest rank:
    image = np.full(10000, 100, np.uint8)
    image[:100] = 0
    image[-100:] = 200
    image = image.reshape(100, 100)
    lo, hi = percentiles(image, 1, 99)
    assert (lo, hi) == (0, 100)
    assert measure_contrast(image) == pytest.approx(100 / 255)
    assert low_contrast(image, fraction_threshold=0.39).keep
    assert not low_contrast(image, fraction_threshold=0.40).keep


def test_agrees_with_skimage_on_uint8():
    rng = np.random.default_rng(0)
    for spread in (2, 8, 13, 40, 200):
        image = np.clip(rng.normal(120, spread / 4, (80, 80)), 0, 255).astype(np.uint8)
        assert low_contrast(image).keep == (not is_low_contrast(image, 0.05)), spread


def test_low_contrast_phantom_dropped_normal_kept():
    from handprep.synth import phantom

    assert not low_contrast(phantom(seed=3, low_contrast=True).image).keep
    assert low_contrast(phantom(seed=3).image).keep
