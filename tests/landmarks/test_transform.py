"""View maps are exact: a pixel moved by np.rot90 / mirror / crop+resize / warp lands where the map says."""
import numpy as np
import pytest

from handprep.landmarks.transform import Affine, crop_scale, mirror, quarter_turns, rotate_about, rotated_canvas, warp


def dot_image(h=7, w=11, col=2, row=5):
    image = np.zeros((h, w), np.uint8)
    image[row, col] = 255
    return image


def where(image):
    row, col = np.argwhere(image == image.max())[0]
    return np.array([col + 0.5, row + 0.5])  # pixel centre, continuous coordinates


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, -1])
def test_quarter_turns_match_rot90(k):
    image = dot_image()
    turned = np.rot90(image, k)
    moved = quarter_turns(k, *image.shape).apply([where(image)])[0]
    assert np.allclose(moved, where(turned))


def test_mirror_then_turn_maps_back_exactly():
    image = dot_image()
    view = np.rot90(image, 1)[:, ::-1]
    affine = quarter_turns(1, *image.shape).then(mirror(view.shape[1]))
    assert np.allclose(affine.apply([where(image)])[0], where(view))
    assert np.allclose(affine.invert([where(view)])[0], where(image))


def test_crop_and_resize_scale_points():
    affine = crop_scale(10, 20, 0.5)
    assert np.allclose(affine.apply([[30, 60]]), [[10, 20]])
    assert np.allclose(affine.invert([[10, 20]]), [[30, 60]])


def test_rotation_direction_and_inverse():
    turn = rotate_about((0, 0), 90)  # counter-clockwise on screen (y down): right → up
    assert np.allclose(turn.apply([[1, 0]]), [[0, -1]])
    points = np.random.default_rng(0).uniform(-50, 50, (21, 2))
    chain = turn.then(mirror(40)).then(crop_scale(3, -7, 1.7))
    assert np.allclose(chain.invert(chain.apply(points)), points, atol=1e-9)


def test_warp_follows_the_affine():
    image = np.zeros((60, 80), np.uint8)
    image[10:13, 50:53] = 255  # a 3×3 blob centred at (51.5, 11.5)
    affine, size = rotated_canvas(*image.shape, 30.0)
    out = warp(image, affine, size)
    ys, xs = np.nonzero(out > 60)
    centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert np.allclose(centroid, affine.apply([[51.5, 11.5]])[0], atol=0.5)
    assert size[0] >= 80 and size[1] >= 60  # the canvas keeps every pixel


def test_identity():
    assert np.allclose(Affine.identity().apply([[1.5, 2.5]]), [[1.5, 2.5]])
