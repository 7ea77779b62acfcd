import math

import numpy as np
import pytest

from handprep.io import write_mask
from handprep.segment.metrics import dice, evaluate_folders, hd95, iou, summarise


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


def test_hd95_of_shifted_squares():
    a, b = square((60, 60), 10, 10, 30), square((60, 60), 10, 13, 30)
    assert hd95(a, a) == 0.0
    assert 2.5 <= hd95(a, b) <= 3.0
    assert hd95(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8)) == 0.0
    assert math.isinf(hd95(a, np.zeros_like(a)))


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
