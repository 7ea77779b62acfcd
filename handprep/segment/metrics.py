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

METRIC_COLUMNS = ("id", "dice", "iou", "hd95_px", "hd95_diag", "pred_area", "true_area", "problem")


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both are empty (MONAI's ``ignore_empty=False`` convention)."""
    a, b = pred > 0, true > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    """|A∩B| / |A∪B|; 1.0 when both are empty."""
    a, b = pred > 0, true > 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels as MONAI's ``get_mask_edges``: the mask minus its erosion by a 4-connected cross.

    Pixels outside the image count as background, so a mask touching the border has its
    border pixels on the surface (scipy's ``binary_erosion`` default, which MONAI uses).
    """
    binary = (mask > 0).astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(binary, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (binary - eroded).astype(bool)


def directed_surface_distances(src: np.ndarray, dest: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from every surface pixel of ``src`` to the nearest surface pixel of ``dest``."""
    edges_src, edges_dest = surface(src), surface(dest)
    if not edges_dest.any():
        return np.full(int(edges_src.sum()), math.inf)
    # exact Euclidean distance transform (Felzenszwalb), as scipy's distance_transform_edt
    to_dest = cv2.distanceTransform((~edges_dest).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return to_dest[edges_src].astype(np.float64)


def hd95(pred: np.ndarray, true: np.ndarray, percentile: float = 95.0) -> float:
    """95th-percentile Hausdorff distance in pixels, as MONAI's ``compute_hausdorff_distance(percentile=95)``.

    The maximum of the two directed distances, each the ``percentile`` (numpy's linear
    interpolation) of the distances from one mask's surface pixels to the other's surface.
    Empty masks, following MONAI: both empty → NaN (undefined; such rows are left out of means);
    exactly one empty → infinity.
    """
    if not (pred > 0).any() and not (true > 0).any():
        return math.nan
    if not (pred > 0).any() or not (true > 0).any():
        return math.inf
    return float(max(np.percentile(directed_surface_distances(pred, true), percentile),
                     np.percentile(directed_surface_distances(true, pred), percentile)))


def compare(pred: np.ndarray, true: np.ndarray) -> dict:
    """Dice, IoU, HD95 in pixels and as a fraction of the image diagonal, and both areas."""
    distance = hd95(pred, true)
    diagonal = math.hypot(*true.shape[:2])
    return {"dice": dice(pred, true), "iou": iou(pred, true), "hd95_px": distance, "hd95_diag": distance / diagonal,
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
    """Mean / median / worst of each metric over the rows that could be compared.

    HD95 means: infinite values (one mask empty) make the mean infinite (a missed hand must
    show); NaN (both empty) rows are left out.
    """
    scored = [r for r in rows if not r.get("problem")]
    out = {"images": len(scored), "problems": len(rows) - len(scored)}
    for key in ("dice", "iou", "hd95_px", "hd95_diag"):
        values = np.array([r[key] for r in scored if key in r], dtype=float)
        values = values[~np.isnan(values)]
        if len(values):
            higher_is_worse = key.startswith("hd95")
            out[key] = {"mean": float(values.mean()), "median": float(np.median(values)),
                        "worst": float(values.max() if higher_is_worse else values.min())}
    return out


def write_metrics_csv(path: str | Path, rows: list[dict], columns: tuple[str, ...] = METRIC_COLUMNS) -> None:
    """Per-image metric rows as CSV (floats to 5 decimals), written atomically."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
