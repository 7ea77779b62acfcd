"""Build the committed raw-film masks from their recorded recipes (masks/tools/recipes.yaml).

    PYTHONPATH=$PWD python masks/tools/build.py IMAGES [ID ...] [--out masks] [--recipes FILE]
        [--draft-model FILE]

A recipe per image id::

    "2707":
      base: near_model       # model (shipped U-Net), film (drafts.film_threshold_mask) or near_model
      fraction: 0.1          # film only: threshold as a share of the span above background
      within: [[x, y], ...]  # film only: polygon where the hand may be (leaves out strips, markers)
      skin: true             # extend the outline to the skin (drafts.extend_to_skin), default true
      feet: true             # trim feet along bright strips at the image edge (drafts.trim_border_feet)
      edits: [{cut: [[x, y], ...]}, {grow: {level: 46}}]   # drafts.apply_edits, in order, after skin
      note: what the review saw

Masks are written to ``--out`` (default masks/) as 0/255 1-bit PNG. Everything is
deterministic given the images and the draft model, so anyone with the RSNA images can rebuild
and audit a mask from its recipe. The draft model is the segmenter shipped at commit a4b3061
(sha256 c78cf178…), not whatever default ships now, so that masks do not follow the model
they are used to judge: ``git show a4b3061:handprep/models/segmenter_default.pt > draft.pt``.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from handprep.io import read_image, write_mask
from handprep.segment.drafts import (apply_edits, extend_to_skin, film_threshold_mask, polygon_mask, smooth_mask,
                                     trim_border_feet)
from handprep.segment.infer import get_segmenter
from handprep.stages.mask import fill_contours, largest_component

RECIPES = Path(__file__).with_name("recipes.yaml")
DRAFT_MODEL_SHA256 = "c78cf17899abf633"  # prefix; the segmenter shipped at commit a4b3061
DRAFT_MODEL = {"path": "draft.pt"}


def check_draft_model(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(DRAFT_MODEL_SHA256):
        raise SystemExit(f"{path}: sha256 {digest[:16]}… is not the draft model {DRAFT_MODEL_SHA256}…; "
                         "get it with: git show a4b3061:handprep/models/segmenter_default.pt > draft.pt")


def model_draft(image: np.ndarray) -> np.ndarray:
    draft = get_segmenter(DRAFT_MODEL["path"], device="cpu").mask(image)
    return fill_contours(largest_component(smooth_mask(fill_contours(largest_component(draft)))))


def base_draft(image: np.ndarray, recipe: dict) -> np.ndarray:
    """``model``; ``film``: film threshold (inside ``within``); ``near_model``: film threshold
    within ``near_px`` of the model's draft, so the outline follows the skin edge while
    markers and frames away from the hand stay out."""
    base = recipe.get("base", "near_model")
    if base == "model":
        return model_draft(image)
    within = polygon_mask(image.shape, recipe["within"]) if recipe.get("within") else None
    if base == "near_model":
        near = int(recipe.get("near_px", 20))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near + 1, 2 * near + 1))
        zone = cv2.dilate(model_draft(image), disc)
        within = zone if within is None else zone & within
    elif base != "film":
        raise ValueError(f"base must be model, film or near_model, got {base!r}")
    return film_threshold_mask(image, fraction=float(recipe.get("fraction", 0.1)), within=within)


def build(image: np.ndarray, recipe: dict) -> np.ndarray:
    """Base draft → outline extended to the skin → border feet trimmed (``skin``/``feet: false`` skip) → edits."""
    mask = base_draft(image, recipe)
    if recipe.get("skin", True):
        mask = extend_to_skin(image, mask)
    if recipe.get("feet", True):
        mask = trim_border_feet(mask)
    return apply_edits(image, mask, recipe.get("edits") or [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", type=Path)
    parser.add_argument("ids", nargs="*")
    parser.add_argument("--out", type=Path, default=Path("masks"))
    parser.add_argument("--recipes", type=Path, default=RECIPES)
    parser.add_argument("--draft-model", type=Path, default=Path("draft.pt"))
    args = parser.parse_args()
    check_draft_model(args.draft_model)
    DRAFT_MODEL["path"] = str(args.draft_model)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    recipes = yaml.safe_load(args.recipes.read_text()) or {}
    for case_id in tqdm(args.ids or list(recipes), desc="building masks", unit="mask"):
        image = read_image(args.images / f"{case_id}.png")
        write_mask(args.out / f"{case_id}.png", build(image, recipes[str(case_id)]))


if __name__ == "__main__":
    main()
