"""Review views for mask drafts: contact sheets and gridded single views (written to scratch, never committed).

    PYTHONPATH=$PWD python masks/tools/sheet.py sheet IMAGES OUT.png ID... --masks DIR[,DIR2]
    PYTHONPATH=$PWD python masks/tools/sheet.py grid IMAGES OUT.png ID --masks DIR[,DIR2] [--crop x0,y0,x1,y1]

The first mask folder is drawn as a red tint with a green outline, the second (optional) as a
magenta outline, so two drafts can be compared at a glance. ``grid`` draws a labelled grid
every 50 px (full-resolution coordinates) for writing polygon edits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from handprep.io import read_image, read_mask, write_png
from handprep.segment.drafts import labelled_grid


def view(image: np.ndarray, masks: list[np.ndarray | None], scale: float) -> np.ndarray:
    lo, hi = np.percentile(image, (0.5, 99.5))  # stretch for display: faint films become visible
    image = np.clip((image.astype(np.float32) - lo) * 255 / max(hi - lo, 1), 0, 255).astype(np.uint8)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    bgr = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    colours = [(0, 255, 0), (255, 0, 255)]
    for index, mask in enumerate(masks):
        if mask is None:
            continue
        small = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        if index == 0:
            bgr[small > 0] = (0.85 * bgr[small > 0] + 0.15 * np.array([0, 0, 255])).astype(np.uint8)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(bgr, contours, -1, colours[index], 1)
    return bgr


def load(images: Path, folders: list[Path], case_id: str):
    image = read_image(images / f"{case_id}.png")
    masks = [read_mask(f / f"{case_id}.png") if (f / f"{case_id}.png").exists() else None for f in folders]
    return image, masks


def sheet(images: Path, folders: list[Path], ids: list[str], out: Path, cell: int = 400, cols: int = 4) -> None:
    entries = []
    for case_id in ids:
        image, masks = load(images, folders, case_id)
        entries.append((case_id, view(image, masks, cell / max(image.shape))))
    write_png(out, labelled_grid(entries, cell, cols))


def grid(images: Path, folders: list[Path], case_id: str, out: Path, crop: list[int] | None, side: int = 900) -> None:
    image, masks = load(images, folders, case_id)
    x0, y0, x1, y1 = crop if crop else (0, 0, image.shape[1], image.shape[0])
    image = image[y0:y1, x0:x1]
    masks = [m[y0:y1, x0:x1] if m is not None else None for m in masks]
    scale = side / max(image.shape)
    canvas = view(image, masks, scale)
    step = 50 if max(image.shape) <= 600 else 100
    for x in range((x0 // step + 1) * step, x1, step):
        px = round((x - x0) * scale)
        cv2.line(canvas, (px, 0), (px, canvas.shape[0] - 1), (255, 200, 0), 1)
        cv2.putText(canvas, str(x), (px + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    for y in range((y0 // step + 1) * step, y1, step):
        py = round((y - y0) * scale)
        cv2.line(canvas, (0, py), (canvas.shape[1] - 1, py), (255, 200, 0), 1)
        cv2.putText(canvas, str(y), (2, py - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    write_png(out, canvas)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sheet", "grid"])
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("ids", nargs="+")
    parser.add_argument("--masks", required=True)
    parser.add_argument("--crop")
    parser.add_argument("--cell", type=int, default=400)
    parser.add_argument("--cols", type=int, default=4)
    args = parser.parse_args()
    folders = [Path(f) for f in args.masks.split(",")]
    if args.mode == "sheet":
        sheet(args.images, folders, args.ids, args.out, cell=args.cell, cols=args.cols)
    else:
        grid(args.images, folders, args.ids[0], args.out, [int(v) for v in args.crop.split(",")] if args.crop else None)


if __name__ == "__main__":
    main()
