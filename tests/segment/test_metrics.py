import math

import numpy as np
import pytest

from handprep.io import write_mask
from handprep.segment.metrics import compare, dice, evaluate_folders, hd95, iou, summarise


def square(shape, y, x, size):
    mask = np.zeros(shape, np.uint8)
    mask[y:y + size, x:x + size] = 255
    return mask


def test_dice_and_iou_known_values():
    a, b = square((20, 20), 0, 0, 10), square((20, 20), 0, 5, 10)  # overlap 50 px of 100 each
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(50 / 150)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    empty = np.zeros((20, 20), np.uint8)
    assert dice(empty, empty) == 1.0 and dice(a, empty) == 0.0


def brute_force_hd95(a, b, percentile=95.0):
    """Reference: every surface pixel pair, MONAI's definition written out by hand."""
    def edges(m):
        m = m > 0
        padded = np.pad(m, 1)
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return np.argwhere(m & ~inner)
    ea, eb = edges(a), edges(b)
    d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), percentile), np.percentile(d.min(0), percentile))


def test_hd95_single_pixels_is_their_distance():
    a, b = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    a[1, 1], b[4, 5] = 255, 255  # 3-4-5 triangle
    assert hd95(a, b) == pytest.approx(5.0)
    assert dice(a, b) == 0.0


def test_hd95_parallel_lines_offset_by_k():
    for k in (1, 3, 7):
        a, b = np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8)
        a[2, 5:25], b[2 + k, 5:25] = 1, 1  # every pixel's nearest partner is straight across
        assert hd95(a, b) == pytest.approx(float(k))


def test_hd95_is_the_95th_percentile_not_the_maximum():
    # b = a's 10-pixel line plus one stray pixel 10 px away: b→a distances are ten 0s and one 10;
    # numpy's 95th percentile of 11 values sits at index 9.5 → (0 + 10) / 2 = 5; a→b is all 0
    a = np.zeros((20, 20), np.uint8)
    a[0, 0:10] = 1
    b = a.copy()
    b[10, 0] = 1
    assert hd95(a, b) == pytest.approx(5.0)
    assert hd95(b, a) == pytest.approx(5.0)  # symmetric: the max of the two directions


def test_hd95_of_squares_offset_by_k_matches_the_definition():
    for k in (1, 3, 6):
        a, b = square((40, 40), 8, 8, 12), square((40, 40), 8, 8 + k, 12)
        assert hd95(a, b) == pytest.approx(brute_force_hd95(a, b))
    # the two left edges are k apart: with a 12-px square the directed 95th percentile is k
    a, b = square((60, 60), 10, 10, 30), square((60, 60), 10, 13, 30)
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0


def test_hd95_border_pixels_are_surface():
    full = np.ones((8, 8), np.uint8)  # touches every border: its edge is the image's outer ring
    inner = square((8, 8), 1, 1, 6)
    # outer ring: 24 pixels 1 px from the inner ring, 4 corners √2 away; the 95th percentile of
    # 28 sorted values sits at index 25.65, among the corners → √2
    assert hd95(full, inner) == pytest.approx(brute_force_hd95(full, inner)) == pytest.approx(math.sqrt(2))


def test_empty_mask_conventions():
    a = square((20, 20), 2, 2, 5)
    empty = np.zeros_like(a)
    assert math.isnan(hd95(empty, empty)) and dice(empty, empty) == 1.0
    assert math.isinf(hd95(a, empty)) and math.isinf(hd95(empty, a))


def test_compare_gives_hd95_as_a_fraction_of_the_diagonal():
    a, b = square((30, 40), 5, 5, 10), square((30, 40), 5, 8, 10)
    row = compare(a, b)
    assert row["hd95_diag"] == pytest.approx(row["hd95_px"] / 50.0)  # 30-40-50 triangle


def test_summary_of_hd95_keeps_infinity_and_drops_nan():
    rows = [{"id": "a", "dice": 1.0, "iou": 1.0, "hd95_px": 2.0, "hd95_diag": 0.01},
            {"id": "b", "dice": 0.0, "iou": 0.0, "hd95_px": math.inf, "hd95_diag": math.inf},
            {"id": "c", "dice": 1.0, "iou": 1.0, "hd95_px": math.nan, "hd95_diag": math.nan}]
    summary = summarise(rows)
    assert math.isinf(summary["hd95_px"]["mean"]) and summary["dice"]["worst"] == 0.0
    assert summarise(rows[:1] + rows[2:])["hd95_px"]["mean"] == 2.0


def test_evaluate_folders_reports_missing_and_mismatched(tmp_path):
    pred, true = tmp_path / "pred", tmp_path / "true"
    write_mask(true / "a.png", square((40, 40), 5, 5, 20))
    write_mask(pred / "a.png", square((40, 40), 5, 5, 20))
    write_mask(true / "b.png", square((40, 40), 5, 5, 20))
    write_mask(true / "c.png", square((40, 40), 5, 5, 20))
    write_mask(pred / "c.png", square((30, 40), 5, 5, 20))
    write_mask(pred / "extra.png", square((40, 40), 5, 5, 20))
    rows = {r["id"]: r for r in evaluate_folders(pred, true, progress=False)}
    assert rows["a"]["dice"] == 1.0 and rows["a"]["problem"] == ""
    assert "no predicted mask" in rows["b"]["problem"]
    assert "40×30 px, ground truth 40×40 px" in rows["c"]["problem"]
    assert "no ground-truth mask" in rows["extra"]["problem"]
    summary = summarise(list(rows.values()))
    assert summary["images"] == 1 and summary["problems"] == 3 and summary["dice"]["mean"] == 1.0
