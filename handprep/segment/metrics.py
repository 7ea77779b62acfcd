"""Segmentation metrics: Dice, IoU and the 95th-percentile Hausdorff distance, per image and folders."""
from __future__ import annotations

import csv
import io as _io
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from handprep.io import ImageReadError, atomic_write_text, read_mask

METRIC_COLUMNS = ("id", "dice", "iou", "hd95_px", "pred_area", "true_area", "problem")


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both are empty."""
    a, b = pred > 0, true > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    """|A∩B| / |A∪B|; 1.0 when both are empty."""
    a, b = pred > 0, true > 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _boundary(mask: np.ndarray) -> np.ndarray:
    binary = (mask > 0).astype(np.uint8)
    return binary - cv2.erode(binary, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)


def hd95(pred: np.ndarray, true: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance between outlines, in pixels.

    0 when both masks are empty; infinity when exactly one is.
    """
    bp, bt = _boundary(pred), _boundary(true)
    if not bp.any() and not bt.any():
        return 0.0
    if not bp.any() or not bt.any():
        return math.inf
    # distance from every pixel to the nearest outline pixel of the other mask
    to_true = cv2.distanceTransform((1 - bt).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_pred = cv2.distanceTransform((1 - bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    distances = np.concatenate([to_true[bp > 0], to_pred[bt > 0]])
    return float(np.percentile(distances, 95))


def compare(pred: np.ndarray, true: np.ndarray) -> dict:
    return {"dice": dice(pred, true), "iou": iou(pred, true), "hd95_px": hd95(pred, true),
            "pred_area": float((pred > 0).mean()), "true_area": float((true > 0).mean())}


def evaluate_folders(pred_dir: str | Path, true_dir: str | Path, progress: bool = True) -> list[dict]:
    """Compare masks matched by file stem; rows for missing, unreadable or mismatched files say why."""
    pred_files = {p.stem: p for p in Path(pred_dir).glob("*.png")}
    true_files = {p.stem: p for p in Path(true_dir).glob("*.png")}
    if not true_files:
        raise FileNotFoundError(f"no ground-truth masks (*.png) in {true_dir}")
    rows = []
    for case_id in tqdm(sorted(true_files), desc="evaluating", unit="mask", disable=not progress):
        row = {"id": case_id}
        if case_id not in pred_files:
            rows.append({**row, "problem": f"no predicted mask {Path(pred_dir) / (case_id + '.png')}"})
            continue
        try:
            pred, true = read_mask(pred_files[case_id]), read_mask(true_files[case_id])
        except ImageReadError as exc:
            rows.append({**row, "problem": str(exc)})
            continue
        if pred.shape != true.shape:
            rows.append({**row, "problem": f"predicted mask is {pred.shape[1]}×{pred.shape[0]} px, "
                                           f"ground truth {true.shape[1]}×{true.shape[0]} px"})
            continue
        rows.append({**row, **compare(pred, true), "problem": ""})
    for case_id in sorted(set(pred_files) - set(true_files)):
        rows.append({"id": case_id, "problem": "no ground-truth mask with this id"})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean / median / min of each metric over the rows that could be compared."""
    scored = [r for r in rows if not r.get("problem")]
    out = {"images": len(scored), "problems": len(rows) - len(scored)}
    for key in ("dice", "iou", "hd95_px"):
        values = np.array([r[key] for r in scored], dtype=float)
        if len(values):
            finite = values[np.isfinite(values)]
            out[key] = {"mean": float(finite.mean()) if len(finite) else math.inf,
                        "median": float(np.median(values)),
                        "worst": float(values.max() if key == "hd95_px" else values.min())}
    return out


def write_metrics_csv(path: str | Path, rows: list[dict]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
