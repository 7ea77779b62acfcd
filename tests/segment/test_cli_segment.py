"""segment-train, segment, segment-eval, masks import/propose from the command line."""
import csv

import cv2
from typer.testing import CliRunner

from cli.main import app
from handprep.io import read_image, read_mask
from handprep.segment.metrics import dice

runner = CliRunner()


def test_segment_then_eval(phantom_model, seg_phantoms, tmp_path):
    out = tmp_path / "pred"
    args = ["segment", str(seg_phantoms["images"]), "--out", str(out), "--model", str(phantom_model.model_path),
            "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "10 masks written, 0 already there, 0 failed" in result.output
    for case_id in seg_phantoms["ids"]:
        mask = read_mask(out / f"{case_id}.png")
        assert mask.shape == read_image(seg_phantoms["images"] / f"{case_id}.png").shape
    result = runner.invoke(app, args)  # resume: nothing to redo
    assert "0 masks written, 10 already there" in result.output
    result = runner.invoke(app, ["segment-eval", "--pred", str(out), "--masks", str(seg_phantoms["masks"]), "--out",
                                 str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "mean" in result.output and "hd95" in result.output
    rows = list(csv.DictReader(open(tmp_path / "eval" / "segment_eval.csv")))
    assert len(rows) == 10 and sum(float(r["dice"]) for r in rows) / 10 > 0.9


def test_segment_with_missing_model_fails_clearly(seg_phantoms, tmp_path):
    result = runner.invoke(app, ["segment", str(seg_phantoms["images"]), "--out", str(tmp_path / "o"),
                                 "--model", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "model file not found" in result.output


def test_segment_train_command(seg_phantoms, tmp_path):
    result = runner.invoke(app, ["segment-train", "--images", str(seg_phantoms["images"]), "--masks",
                                 str(seg_phantoms["masks"]), "--out", str(tmp_path / "m"), "--work-size-px", "96",
                                 "--tile-px", "64", "--stride-px", "32", "--epochs", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "epoch   2" in result.output and "validation Dice" in result.output
    assert (tmp_path / "m" / "model.pt").is_file() and (tmp_path / "m" / "history.csv").is_file()
    bad = runner.invoke(app, ["segment-train", "--images", str(seg_phantoms["images"]), "--masks",
                              str(seg_phantoms["masks"]), "--out", str(tmp_path / "x"), "--architecture", "vgg99"])
    assert bad.exit_code == 2 and "architecture 'vgg99' is unknown" in bad.output


def test_masks_propose_and_import(seg_phantoms, tmp_path):
    result = runner.invoke(app, ["masks", "propose", str(seg_phantoms["images"]), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "10 drafts" in result.output
    first = seg_phantoms["ids"][0]
    assert dice(read_mask(tmp_path / "d" / f"{first}.png"), read_mask(seg_phantoms["masks"] / f"{first}.png")) > 0.9
    exports = tmp_path / "exports"
    exports.mkdir()
    image = read_image(seg_phantoms["images"] / f"{first}.png")
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    bgr[read_mask(seg_phantoms["masks"] / f"{first}.png") > 0] = (0, 0, 255)
    cv2.imwrite(str(exports / f"{first}.png"), bgr)
    (exports / "junk.png").write_bytes(b"junk")
    result = runner.invoke(app, ["masks", "import", str(exports), "--out", str(tmp_path / "imp")])
    assert result.exit_code == 1 and "1 masks" in result.output and "junk.png" in result.output


def test_model_info(phantom_model, tmp_path):
    result = runner.invoke(app, ["model-info", str(phantom_model.model_path)])
    assert result.exit_code == 0 and "work_size_px: 128" in result.output and "validation (full resolution)" in result.output
    result = runner.invoke(app, ["model-info", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "model file not found" in result.output
