"""Measure every raw radiograph for choosing a diverse subset to mask, and draft two masks.

Usage (from the repository root):
    PYTHONPATH=$PWD python masks/tools/measure.py IMAGES LABELS OUT_DIR

Writes OUT_DIR/measure.csv (one row per image) and OUT_DIR/drafts/{model,threshold}/<id>.png
plus OUT_DIR/prob/<id>.png (model probability ×255). Resumable: images whose row exists are skipped.
Numbers only; nothing here is a copy of an image.

Columns, and why they help choose:
- width, height, landscape: landscape and odd-sized films.
- border_med / side medians (outer 4 % of each side): white, grey or black background,
  a frame on one side (one side much brighter than the others).
- p1, p50, p99, contrast (p99 − p1): faint films (low contrast), dark films (low p99).
- bright_frac: share of pixels ≥ 250 (white labels, frames, saturated borders).
- edge_steps: sides with a sharp straight step in the mean profile near the edge (frame,
  cassette or collimation edge).
- model_area, thr_area, agree_dice: area of the shipped model's and the threshold drafter's
  masks and their Dice; low agreement marks images where at least one of them fails.
- model_touch: image sides the model mask touches along more than 15 % of their length.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from handprep.io import list_images, read_image, write_mask, write_png
from handprep.segment.infer import Segmenter
from handprep.segment.metrics import dice
from handprep.stages.mask import fill_contours, largest_component, threshold_mask

COLUMNS = ["id", "boneage", "male", "width", "height", "landscape", "border_med", "top", "bottom", "left",
           "right", "p1", "p50", "p99", "contrast", "bright_frac", "edge_steps", "model_area", "thr_area",
           "agree_dice", "model_touch"]


def side_medians(image: np.ndarray, frac: float = 0.04) -> dict[str, float]:
    h, w = image.shape
    bh, bw = max(1, int(h * frac)), max(1, int(w * frac))
    return {"top": float(np.median(image[:bh])), "bottom": float(np.median(image[-bh:])),
            "left": float(np.median(image[:, :bw])), "right": float(np.median(image[:, -bw:]))}


def edge_steps(image: np.ndarray, within: float = 0.15, min_step: float = 40.0) -> str:
    """Sides whose mean row/column profile jumps by ≥ ``min_step`` grey levels near the edge."""
    small = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
    found = []
    n = int(256 * within)
    profiles = {"top": small.mean(axis=1)[:n], "bottom": small.mean(axis=1)[::-1][:n],
                "left": small.mean(axis=0)[:n], "right": small.mean(axis=0)[::-1][:n]}
    for side, profile in profiles.items():
        if np.max(np.abs(np.diff(profile[1:]))) >= min_step / 4 and abs(profile[1] - profile[-1]) >= min_step:
            found.append(side)
    return "+".join(found)


def touching(mask: np.ndarray, frac: float = 0.15) -> str:
    sides = {"top": mask[0], "bottom": mask[-1], "left": mask[:, 0], "right": mask[:, -1]}
    return "+".join(s for s, line in sides.items() if (line > 0).mean() > frac)


def measure(image: np.ndarray, model_mask: np.ndarray, thr_mask: np.ndarray) -> dict:
    h, w = image.shape
    p1, p50, p99 = np.percentile(image, (1, 50, 99))
    sides = side_medians(image)
    return {"width": w, "height": h, "landscape": int(w > h), "border_med": float(np.median(list(sides.values()))),
            **{k: round(v, 1) for k, v in sides.items()}, "p1": float(p1), "p50": float(p50), "p99": float(p99),
            "contrast": float(p99 - p1), "bright_frac": round(float((image >= 250).mean()), 4),
            "edge_steps": edge_steps(image), "model_area": round(float((model_mask > 0).mean()), 4),
            "thr_area": round(float((thr_mask > 0).mean()), 4),
            "agree_dice": round(dice(model_mask, thr_mask), 4), "model_touch": touching(model_mask)}


def main(images: str, labels: str, out: str) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "measure.csv"
    label_rows = {r["id"]: r for r in csv.DictReader(open(labels))}
    done = {r["id"] for r in csv.DictReader(open(table))} if table.exists() else set()
    segmenter = Segmenter("default", device="cpu")
    new_file = not table.exists()
    with open(table, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for path in tqdm([p for p in list_images(images) if p.stem not in done], desc="measuring", unit="img"):
            image = read_image(path)
            if image.dtype != np.uint8:
                image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            prob = segmenter.probability(image)
            model_mask = fill_contours(largest_component(np.where(prob > 0.5, 255, 0).astype(np.uint8)))
            thr_mask = threshold_mask(image, work_size_px=4096, blur_px=3, method="background")
            write_mask(out_dir / "drafts" / "model" / f"{path.stem}.png", model_mask)
            write_mask(out_dir / "drafts" / "threshold" / f"{path.stem}.png", thr_mask)
            write_png(out_dir / "prob" / f"{path.stem}.png", (prob * 255).round().astype(np.uint8))
            label = label_rows.get(path.stem, {})
            writer.writerow({"id": path.stem, "boneage": label.get("boneage", ""), "male": label.get("male", ""),
                             **measure(image, model_mask, thr_mask)})
            handle.flush()


if __name__ == "__main__":
    main(*sys.argv[1:4])
