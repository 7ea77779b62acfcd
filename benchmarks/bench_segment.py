"""Hand segmentation speed on one CPU core, in one run, on real 1600×2080 radiographs.

  (1) the shipped default model: working scale (long side 384 px), 128 px tiles, stride 96
  (2) the reference report's setup: an smp resnet34 U-Net over the full-resolution image,
      128 px tiles every 96 px (timing only: its weights are random, the arithmetic is the same)

Target: (1) ≤ 1 s per radiograph. Also prints (1)'s Dice against masks/ on the images the
default model never trained on (its held-out split), at full resolution.

    python benchmarks/bench_segment.py [--data ../shared/data/rsna60] [--n 5] [--n-full 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handprep.io import read_image, read_mask  # noqa: E402
from handprep.segment.infer import Segmenter  # noqa: E402
from handprep.segment.metrics import compare  # noqa: E402
from handprep.segment.model import build_unet  # noqa: E402
from handprep.segment.tiling import sliding_window  # noqa: E402
from handprep.stages.mask import fill_contours  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def full_resolution_seconds(images: list[np.ndarray]) -> float:
    model = build_unet("resnet34", 5, (256, 128, 64, 32, 16)).eval()

    @torch.inference_mode()
    def predict(batch):
        return torch.sigmoid(model(torch.from_numpy(batch[:, None])))[:, 0].numpy()

    started = time.perf_counter()
    for image in images:
        sliding_window(image.astype(np.float32) / 255, predict, tile=128, stride=96, batch_size=16)
    return (time.perf_counter() - started) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/rsna60")
    parser.add_argument("--masks", type=Path, default=REPO / "masks")
    parser.add_argument("--n", type=int, default=5, help="images timed for the default model")
    parser.add_argument("--n-full", type=int, default=2, help="images timed for the full-resolution setup")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    segmenter = Segmenter("default", device="cpu")
    held_out = segmenter.meta["val_ids"]
    paths = [args.data / "images" / f"{i}.png" for i in held_out]
    images = [read_image(p) for p in paths]
    segmenter.mask(images[0])  # warm-up (first call allocates)
    started = time.perf_counter()
    for image in images[: args.n]:
        segmenter.mask(image)
    default_seconds = (time.perf_counter() - started) / min(args.n, len(images))

    scores = []
    for case_id, image in zip(held_out, images):
        pred = fill_contours(segmenter.mask(image), min_area_ratio=0.05)
        scores.append(compare(pred, read_mask(args.masks / f"{case_id}.png")))
    full_seconds = full_resolution_seconds(images[: args.n_full])
    print(json.dumps({
        "image_size": f"{images[0].shape[1]}x{images[0].shape[0]}",
        "threads": 1,
        "default_model": {"architecture": segmenter.meta["architecture"],
                          "work_size_px": segmenter.meta["work_size_px"],
                          "seconds_per_radiograph": round(default_seconds, 3),
                          "held_out_images": len(scores),
                          "dice_mean": round(float(np.mean([s["dice"] for s in scores])), 4),
                          "dice_worst": round(float(np.min([s["dice"] for s in scores])), 4),
                          "hd95_px_mean": round(float(np.mean([s["hd95_px"] for s in scores])), 1)},
        "full_resolution_resnet34_128_96": {"seconds_per_radiograph": round(full_seconds, 2)},
        "speedup": round(full_seconds / default_seconds, 1),
        "target_default_seconds": "≤ 1",
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
