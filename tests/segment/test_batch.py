"""`handprep segment` internals: the GPU-style path (tiles of several images per pass, worker threads)
gives the same masks as the CPU path, and every mask gets its quality row."""
import csv

import numpy as np

from handprep.io import read_mask
from handprep.segment.batch import QUALITY_CSV, segment_folder


def test_batched_threaded_path_matches_one_at_a_time(phantom_model, seg_phantoms, tmp_path):
    one = segment_folder(seg_phantoms["images"], tmp_path / "one", str(phantom_model.model_path), device="cpu",
                         progress=False)
    many = segment_folder(seg_phantoms["images"], tmp_path / "many", str(phantom_model.model_path), device="cpu",
                          progress=False, images_per_batch=3, workers=2, batch_size=64)
    assert sorted(one.written) == sorted(many.written) == sorted(seg_phantoms["ids"])
    for case_id in seg_phantoms["ids"]:
        assert np.array_equal(read_mask(tmp_path / "one" / f"{case_id}.png"),
                              read_mask(tmp_path / "many" / f"{case_id}.png"))
    rows = list(csv.DictReader(open(tmp_path / "many" / QUALITY_CSV)))
    assert [r["id"] for r in rows] == sorted(seg_phantoms["ids"])
    assert all(0.05 < float(r["area"]) < 0.7 and float(r["confidence"]) > 0 for r in rows)


def test_unreadable_file_is_reported_and_the_rest_done(phantom_model, seg_phantoms, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for case_id in seg_phantoms["ids"][:3]:
        (images / f"{case_id}.png").write_bytes((seg_phantoms["images"] / f"{case_id}.png").read_bytes())
    (images / "broken.png").write_bytes(b"broken")
    result = segment_folder(images, tmp_path / "out", str(phantom_model.model_path), device="cpu", progress=False,
                            images_per_batch=2, workers=2)
    assert len(result.written) == 3 and list(result.failed) == [str(images / "broken.png")]
