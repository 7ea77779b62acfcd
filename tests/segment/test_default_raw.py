"""The shipped segmenter on the raw TEST split (reviewed masks of raw RSNA films it never trained on).

Needs the raw films (HANDPREP_RAW_DATA or ../shared/data/rsna-raw) and masks/splits_final.json;
skipped with a reason otherwise.
"""
import json

import numpy as np
import pytest

from handprep.io import read_image, read_mask
from handprep.segment.evaluate import gross_failure, model_mask
from handprep.segment.infer import Segmenter
from handprep.segment.metrics import dice
from tests.conftest import REPO

pytestmark = pytest.mark.realdata
SPLIT = REPO / "masks" / "splits_final.json"
# Regression guards below what the shipped model measured on the raw test split (v4: 60 fresh
# films; mean 0.9929, worst 0.9769, 0 gross). They keep the margin the v3 model needed (mean
# 0.9907, worst 0.9600, 2 gross on the v3 draw), since the v4 draw is easier in kind.
MEAN_DICE, WORST_DICE, MAX_GROSS = 0.985, 0.95, 3


def test_default_model_on_the_raw_test_split(raw_data):
    if not SPLIT.is_file():
        pytest.skip(f"{SPLIT} not found: the raw masks and their split are not in this checkout")
    test_ids = json.loads(SPLIT.read_text())["test"]
    segmenter = Segmenter("default", device="cpu")
    assert not set(test_ids) & (set(segmenter.meta["train_ids"]) | set(segmenter.meta["val_ids"]))
    raw = [i for i in test_ids if (raw_data / "images" / f"{i}.png").is_file()]
    assert len(raw) >= 50
    scores, gross = [], []
    for case_id in raw:
        truth = read_mask(REPO / "masks" / f"{case_id}.png")
        pred, _ = model_mask(segmenter, read_image(raw_data / "images" / f"{case_id}.png"))
        scores.append(dice(pred, truth))
        if gross_failure(pred, truth)[2]:
            gross.append(case_id)
    assert np.mean(scores) >= MEAN_DICE and min(scores) >= WORST_DICE, (np.mean(scores), min(scores))
    assert len(gross) <= MAX_GROSS, gross
