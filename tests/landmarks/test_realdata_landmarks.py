"""Landmarks on a few raw RSNA radiographs (skipped when rsna-raw is absent)."""
import numpy as np

from handprep.io import read_image
from handprep.landmarks.anatomy import qa
from handprep.landmarks.evaluate import keypoint_errors, read_annotations
from tests.conftest import REPO

ANNOTATIONS = REPO / "landmarks" / "annotations_rsna_raw.csv"


def test_raw_radiographs_with_the_shipped_segmenter(raw_data, detector):
    from handprep.segment.infer import get_segmenter
    from handprep.stages.mask import fill_contours

    truth = read_annotations(ANNOTATIONS) if ANNOTATIONS.is_file() else {}
    ids = sorted(truth)[:2] or sorted(p.stem for p in (raw_data / "images").glob("*.png"))[:2]
    segmenter = get_segmenter("default", "cpu")
    for case_id in ids:
        image = read_image(raw_data / "images" / f"{case_id}.png")
        mask = fill_contours(segmenter.mask(image), 127, 0.05)
        found = detector.detect(image, mask)
        assert found.found, f"{case_id}: {found.reason}"
        assert qa(found, mask)["fingers"] == 5
        if case_id in truth:
            assert found.handedness == truth[case_id]["side"]
            errors = keypoint_errors(found.points, truth[case_id]["points"])
            assert np.median([errors[k] for k in errors if k != "wrist"]) < 0.05, f"{case_id}: {errors}"
