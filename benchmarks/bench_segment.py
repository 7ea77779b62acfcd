"""Hand segmentation speed, in one run: seconds per raw radiograph on one CPU core, and
radiographs per second on a GPU when one is present.

  CPU (always): what ``handprep segment`` does per image at default settings — decode the
  PNG, scale to the model's working size, tiles, predict, back to full size, threshold, quality
  numbers, the model file's post-processing — on half-native raw RSNA radiographs (rsna-raw), ``torch.set_num_threads(1)``.
  Target: ≤ 0.5 s per radiograph.

  GPU (only with CUDA): ``Segmenter.mask`` one image at a time, and ``segment_folder`` (tiles of
  32 images per pass, 8 decode/write threads, float16 autocast) over the folder. Aim ≥ 200/s.

  ``--model`` times another model file (e.g. an alternative architecture or working size).

    python benchmarks/bench_segment.py [--data ../shared/data/rsna-raw] [--n 20] [--model default]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handprep.io import list_images, read_image  # noqa: E402
from handprep.segment.batch import segment_folder  # noqa: E402
from handprep.segment.infer import Segmenter, binarise  # noqa: E402
from handprep.segment.quality import mask_quality  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds(model: str, paths: list[Path]) -> dict:
    """Per-radiograph wall time on one core, decode to filled mask, as ``handprep segment`` on a CPU."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    segmenter = Segmenter(model, device="cpu")
    segmenter.mask(read_image(paths[0]))  # warm-up (first call allocates)
    times, cpu, sizes = [], [], []
    for path in paths:
        started, started_cpu = time.perf_counter(), time.process_time()
        image = read_image(path)
        prob = segmenter.probability(image)
        mask = binarise(prob, segmenter.threshold())
        mask_quality(mask, prob)
        segmenter.finish(mask)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        sizes.append(image.shape)
    return {"model": str(segmenter.path), "architecture": segmenter.meta.get("architecture"),
            "work_size_px": segmenter.settings["work_size_px"], "stride_px": segmenter.settings["stride_px"],
            "images": len(times), "largest": f"{max(s[1] for s in sizes)}x{max(s[0] for s in sizes)}",
            "seconds_per_radiograph_mean": round(float(np.mean(times)), 3),
            "seconds_per_radiograph_max": round(float(np.max(times)), 3),
            # CPU time of this one-thread process: what the wall time is on an idle core
            "cpu_seconds_per_radiograph_mean": round(float(np.mean(cpu)), 3), "target_seconds": "≤ 0.5"}


def gpu_rates(model: str, folder: Path, paths: list[Path]) -> dict:
    torch.set_num_threads(4)
    segmenter = Segmenter(model, device="cuda")
    images = [read_image(p) for p in paths]
    segmenter.mask(images[0])
    torch.cuda.synchronize()
    started = time.perf_counter()
    for image in images:
        segmenter.mask(image)
    torch.cuda.synchronize()
    one_by_one = len(images) / (time.perf_counter() - started)
    n = len(list_images(folder))
    with tempfile.TemporaryDirectory() as out:
        segment_folder(folder, out, model, device="cuda", progress=False, overwrite=True)  # warm-up pass
        started = time.perf_counter()
        segment_folder(folder, out, model, device="cuda", progress=False, overwrite=True)
        folder_rate = n / (time.perf_counter() - started)
    return {"device": torch.cuda.get_device_name(0), "segmenter_mask_per_s": round(one_by_one, 1),
            "segment_folder_per_s": round(folder_rate, 1), "folder_images": n, "aim_per_s": "≥ 200"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/rsna-raw")
    parser.add_argument("--n", type=int, default=20, help="radiographs timed on the CPU (spread over the folder)")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    paths = list_images(args.data / "images")
    if not paths:
        sys.exit(f"no images in {args.data / 'images'}: point --data at a folder with images/")
    picked = paths[:: max(1, len(paths) // args.n)][: args.n]
    report = {"machine": platform.processor() or platform.machine(), "threads": 1,
              "load_average_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
              "cpu": cpu_seconds(args.model, picked)}
    if torch.cuda.is_available():
        report["gpu"] = gpu_rates(args.model, args.data / "images", paths[:200])
    else:
        report["gpu"] = "no CUDA device here: not measured"
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
