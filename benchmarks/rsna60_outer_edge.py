"""rsna60: segmenters against the committed masks and against the outer edge of the tissue.

The rsna60 films are pre-cleaned: the background is exactly 0 (a few noise pixels of 1–2), so
the outer edge of visible tissue is simply ``image > 2`` → largest region → holes filled. The
committed rsna60 masks are the threshold drafter's outline, which lies inside that edge; the
raw masks (and models trained on them) follow the outer edge. Scoring a model against both
shows whether a lower Dice on rsna60 is the model or the reference's convention.

    python benchmarks/rsna60_outer_edge.py --data ../shared/data/rsna60 [--model default --model OTHER.pt]
        [--subset test --subset validation]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handprep.io import read_image, read_mask  # noqa: E402
from handprep.segment.train import read_split  # noqa: E402
from handprep.segment.infer import get_segmenter  # noqa: E402
from handprep.segment.metrics import dice  # noqa: E402
from handprep.stages.mask import fill_contours, largest_component  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKGROUND_MAX = 2  # pre-cleaned films: background 0, noise up to 2


def outer_edge_mask(image: np.ndarray) -> np.ndarray:
    """The tissue's outer edge on a zero background, as a filled 0/255 mask."""
    tissue = np.where(image > BACKGROUND_MAX, 255, 0).astype(np.uint8)
    return fill_contours(largest_component(tissue))


def score(model: str, ids: list[str], images: Path) -> dict[str, list[float]]:
    segmenter = get_segmenter(model)
    scores = {"committed": [], "outer_edge": []}
    for case_id in ids:
        image = read_image(images / f"{case_id}.png")
        predicted = segmenter.finish(segmenter.mask(image)) > 0
        scores["committed"].append(dice(predicted, read_mask(REPO / "masks" / f"{case_id}.png") > 0))
        scores["outer_edge"].append(dice(predicted, outer_edge_mask(image) > 0))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the rsna60 folder (with images/)")
    parser.add_argument("--model", action="append", help="default, or a model file; repeatable")
    parser.add_argument("--subset", action="append", help="split subsets to use (default test, validation)")
    args = parser.parse_args()
    split = read_split(REPO / "masks" / "splits_final.json")
    images = args.data / "images"
    ids = [i for subset in args.subset or ["test", "validation"] for i in split[subset]
           if (images / f"{i}.png").is_file()]
    committed_vs_outer = [dice(read_mask(REPO / "masks" / f"{i}.png") > 0,
                               outer_edge_mask(read_image(images / f"{i}.png")) > 0) for i in ids]
    print(f"{len(ids)} rsna60 films; committed masks vs outer edge: Dice mean {np.mean(committed_vs_outer):.4f}")
    for model in args.model or ["default"]:
        scores = score(model, ids, images)
        print(model, "  ".join(f"vs {k}: mean {np.mean(v):.4f} worst {np.min(v):.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
