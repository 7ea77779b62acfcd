"""Second draft for films on black padding: the model on the film-stretched image (drafts.film_stretch).

    PYTHONPATH=$PWD python masks/tools/draft_film.py IMAGES OUT_DIR ID...
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from handprep.io import read_image, write_mask
from handprep.segment.drafts import film_stretch, smooth_mask
from handprep.segment.infer import Segmenter
from handprep.stages.mask import fill_contours, largest_component


def main(images: str, out: str, *ids: str) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    segmenter = Segmenter("default", device="cpu")
    for case_id in tqdm(ids, desc="film drafts"):
        image = film_stretch(read_image(Path(images) / f"{case_id}.png"))
        mask = fill_contours(largest_component(segmenter.mask(image)))
        write_mask(Path(out) / f"{case_id}.png", fill_contours(largest_component(smooth_mask(mask))))


if __name__ == "__main__":
    main(*sys.argv[1:])
