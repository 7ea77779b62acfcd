"""`handprep landmarks`: CSV schema, one row per file, reasons for bad files, overlays, resume."""
import csv

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from handprep.io import write_mask, write_png
from handprep.landmarks.batch import read_landmarks_csv

runner = CliRunner()
EXPECTED_HEADER = (["id", "found", "score", "handedness"] + [f"{a}{i}" for i in range(21) for a in "xy"]
                   + ["reason", "qa", "rendering", "view", "mask", "path", "seconds"])


def test_landmarks_command(phantoms, tmp_path):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    write_png(images / "hand.png", phantoms[3].image)  # a right hand turned 95°
    write_mask(masks / "hand.png", phantoms[3].mask)
    write_png(images / "empty.png", np.full((240, 200), 20, np.uint8))
    (images / "broken.png").write_bytes(b"not a png at all")
    result = runner.invoke(app, ["landmarks", str(images), "--out", str(out), "--masks", str(masks)])
    assert result.exit_code == 1, result.output  # some images without a hand
    assert "3 images: hand found in 1 (0 left, 1 right)" in result.output
    with open(out / "landmarks.csv", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == EXPECTED_HEADER
        assert len(list(reader)) == 3
    rows = read_landmarks_csv(out / "landmarks.csv")
    hand = rows["hand"]
    assert hand["found"] == "1" and hand["handedness"] == "right" and hand["mask"] == "file" and hand["reason"] == ""
    error = np.linalg.norm(hand["points"] - phantoms[3].meta["keypoints"], axis=1).mean()
    assert error < 0.05 * np.ptp(phantoms[3].meta["keypoints"][:, 1])  # original pixel coordinates
    assert rows["empty"]["found"] == "0" and "no hand found" in rows["empty"]["reason"]
    assert "no mask" in rows["empty"]["reason"]  # says why the image alone was used
    assert rows["broken"]["found"] == "0" and "broken.png" in rows["broken"]["reason"]
    assert (out / "overlays" / "hand.png").is_file() and (out / "overlays" / "empty.png").is_file()

    again = runner.invoke(app, ["landmarks", str(images), "--out", str(out), "--masks", str(masks)])
    assert "3 from an earlier run" in again.output
    assert read_landmarks_csv(out / "landmarks.csv")["hand"]["x0"] == hand["x0"]


def test_missing_folder_is_an_error(tmp_path):
    result = runner.invoke(app, ["landmarks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output
