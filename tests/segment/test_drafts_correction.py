"""Correcting drafts: recorded edits, film threshold, skin extension, border feet."""
import cv2
import numpy as np
import pytest

from handprep.segment.drafts import (apply_edits, extend_to_skin, film_region, film_stretch, film_threshold_mask,
                                     trim_border_feet)
from handprep.segment.metrics import dice
from handprep.synth import phantom


def eroded(mask: np.ndarray, px: int) -> np.ndarray:
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.erode(mask, disc)


def padded_faint_film(seed: int = 3, pad: int = 60):
    """A faint phantom (hand 6-30 grey levels above a grey film) on a black canvas, with a gradient."""
    p = phantom(seed=seed, height=360, width=280, border=False, marker=False, noise=1.0)
    film = 40 + p.image.astype(np.float32) * 0.15
    film += np.linspace(0, 4, film.shape[0], dtype=np.float32)[:, None]  # heel effect
    canvas = np.zeros((film.shape[0] + 2 * pad, film.shape[1] + 2 * pad), np.uint8)
    canvas[pad:-pad, pad:-pad] = np.clip(np.round(film), 0, 255).astype(np.uint8)
    truth = np.zeros(canvas.shape, np.uint8)
    truth[pad:-pad, pad:-pad] = p.mask
    return canvas, truth, pad


def test_apply_edits_cut_add_keep_in_pixels_and_order():
    mask = np.zeros((100, 120), np.uint8)
    mask[20:80, 30:90] = 255  # 60×60 square
    image = np.zeros_like(mask)
    cut = apply_edits(image, mask, [{"cut": [[60, 0], [120, 0], [120, 100], [60, 100]]}])
    assert cut[50, 40] == 255 and cut[50, 70] == 0 and (cut > 0).sum() == 60 * 30
    added = apply_edits(image, mask, [{"add": [[90, 40], [110, 40], [110, 60], [90, 60]]}])
    assert added[50, 100] == 255  # joined to the square, so it survives largest-region
    kept = apply_edits(image, mask, [{"keep": [[0, 0], [120, 0], [120, 50], [0, 50]]}])
    assert kept[30, 50] == 255 and kept[60, 50] == 0
    apart = apply_edits(image, mask, [{"add": [[100, 5], [110, 5], [110, 15], [100, 15]]}])
    assert apart[10, 105] == 0  # a separate island is dropped: one region per mask
    with pytest.raises(ValueError, match="must be one of cut, add, keep"):
        apply_edits(image, mask, [{"erase": [[0, 0]]}])


def test_grow_takes_faint_tissue_above_the_level_only_inside_its_polygon():
    image = np.full((100, 100), 40, np.uint8)
    image[30:70, 20:60] = 80  # bright core (the draft)
    image[30:70, 60:75] = 50  # faint rim beside it
    image[5:15, 5:15] = 90  # a bright marker apart from it
    draft = np.where(image == 80, 255, 0).astype(np.uint8)
    grown = apply_edits(image, draft, [{"grow": {"level": 45}}])
    assert grown[50, 70] == 255 and grown[50, 80] == 0 and grown[10, 10] == 0
    fenced = apply_edits(image, draft, [{"grow": {"level": 45, "within": [[0, 0], [65, 0], [65, 100], [0, 100]]}}])
    assert fenced[50, 62] == 255 and fenced[50, 70] == 0


def test_film_region_and_stretch_on_black_padding():
    canvas, _, pad = padded_faint_film()
    film = film_region(canvas) > 0
    inner = np.zeros(film.shape, bool)
    inner[pad + 3:-pad - 3, pad + 3:-pad - 3] = True
    outer = np.zeros(film.shape, bool)
    outer[pad - 3:-pad + 3, pad - 3:-pad + 3] = True
    assert film[inner].all() and not film[~outer].any()  # the film to within the blur at its edge
    stretched = film_stretch(canvas)
    assert stretched[: pad // 2].max() == 0  # padding stays black
    assert np.percentile(stretched[pad:-pad, pad:-pad], 99.5) >= 250  # the film now spans the range


def test_film_threshold_finds_a_faint_hand_on_padding_despite_a_gradient():
    canvas, truth, _ = padded_faint_film()
    draft = film_threshold_mask(canvas)
    assert dice(draft, truth) > 0.95
    assert not draft[: 40].any()  # nothing in the black padding


def test_film_threshold_within_fences_out_a_marker_touching_the_hand():
    canvas, truth, pad = padded_faint_film(seed=4)
    ys, xs = np.nonzero(truth)
    top = ys.min()
    x = int(xs[ys == top].mean())
    canvas[top - 25:top + 3, x - 6:x + 6] = 120  # bright bar touching a fingertip
    fence = np.full(canvas.shape, 255, np.uint8)
    fence[: top - 1, x - 10:x + 10] = 0
    plain = film_threshold_mask(canvas)
    fenced = film_threshold_mask(canvas, within=fence)
    assert plain[top - 20, x] == 255  # without the fence the bar joins the hand
    assert fenced[top - 20, x] == 0 and dice(fenced, truth) > 0.95


def skin_case(strip: bool):
    p = phantom(seed=7, height=400, width=320, border=False, marker=False, noise=1.5)
    image, truth = p.image.copy(), p.mask.copy()
    if strip:
        image[-12:] = 230  # bright film-edge strip that the forearm runs into
        truth[-12:] = 0
    return image, truth, eroded(truth, 3)


def test_extend_to_skin_recovers_a_tight_outline_up_to_the_background():
    image, truth, tight = skin_case(strip=False)
    extended = extend_to_skin(image, tight)
    band = (cv2.erode(truth, np.ones((3, 3), np.uint8)) > 0) & (tight == 0)
    assert (extended[band] > 0).mean() > 0.99  # the skin the tight draft missed is back
    beyond = (extended > 0) & (cv2.dilate(truth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) == 0)
    assert beyond.sum() < 0.002 * (truth > 0).sum()  # stops where the blurred edge meets the background
    assert np.all(tight[extended == 0] == 0)  # only ever grows


def test_extend_to_skin_never_takes_a_bright_frame_strip():
    image, truth, tight = skin_case(strip=True)
    extended = extend_to_skin(image, tight)
    assert not extended[-8:].any()  # brighter than the outline: the image does not fade into it
    assert dice(extended, truth) > dice(tight, truth) + 0.02


def test_trim_border_feet_cuts_a_strip_and_keeps_an_oblique_forearm():
    mask = np.zeros((200, 200), np.uint8)
    cv2.fillPoly(mask, [np.array([[60, 0], [120, 0], [140, 199], [80, 199]], np.int32)], 255)  # slanted forearm
    clean = mask.copy()
    mask[188:196, 5:195] = 255  # foot along a bright bottom strip
    trimmed = trim_border_feet(mask)
    assert not trimmed[190, 10:70].any() and not trimmed[190, 150:190].any()
    assert dice(trimmed, clean) > 0.99
    assert dice(trim_border_feet(clean), clean) > 0.995  # nothing to trim: unchanged
