"""predict: raw files through the chain recorded in the model file, then the regressor; evaluate."""
import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from handprep.boneage.data import BoneAgeDataError
from handprep.boneage.model import ModelFileError
from handprep.boneage.predict import predict_images, read_sex_table, recorded_chain


@pytest.fixture(scope="module")
def model(trained):
    return trained


def test_predict_round_trips_through_the_recorded_chain(model, age_run, tmp_path):
    """Raw phantoms → recorded chain → regressor gives what the model gave on the packed images."""
    rows = predict_images(model.model_path, age_run["images"], tmp_path / "preds.csv",
                          sex_table=read_sex_table(age_run["labels"]), workers=2, progress=False)
    assert [r["status"] for r in rows] == ["ok"] * 16
    by_id = {r["id"]: r for r in rows}
    # CSV rounding on the CPU; on CUDA both paths run in bfloat16 (8-bit mantissa), in batches of
    # different make-up: a 177-month prediction moved by 0.11 months on an H200
    tolerance = 0.5 if torch.cuda.is_available() else 0.06
    for packed in csv.DictReader(open(model.out / "predictions.csv")):  # the validation images
        row = by_id[packed["id"]]
        assert row["boneage_months"] == pytest.approx(float(packed["predicted"]), abs=tolerance)
        assert row["lower"] == pytest.approx(float(packed["lower"]), abs=tolerance)
        assert row["upper"] == pytest.approx(float(packed["upper"]), abs=tolerance)
    written = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert list(written[0])[:6] == ["id", "boneage_months", "lower", "upper", "status", "reason"]


def test_bad_images_get_a_row_and_the_batch_goes_on(model, age_run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(age_run["images"].glob("*.png"))[0]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows = predict_images(model.model_path, folder, tmp_path / "p.csv", sex=False, progress=False)
    status = {r["id"]: (r["status"], r["reason"]) for r in rows}
    assert status[good.stem][0] == "ok" and status["broken"][0] == "failed" and status["broken"][1]
    rows = predict_images(model.model_path, folder, tmp_path / "p.csv", sex_table={"broken": True},
                          progress=False)
    assert {r["id"]: r["reason"] for r in rows}[good.stem] == f"no sex for id {good.stem} in the --sex-from file"


def test_sex_table_errors_name_rows(tmp_path):
    path = tmp_path / "sex.csv"
    path.write_text("id,male\na,M\nb,x\nc,\n")
    with pytest.raises(BoneAgeDataError, match="2 bad row.*line 3.*line 4"):
        read_sex_table(path)


def test_model_without_a_chain_is_refused_for_raw_images():
    with pytest.raises(ModelFileError, match="records no preprocessing chain"):
        recorded_chain({"pipeline": None})


def test_cli_predict_and_evaluate(model, age_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(model.model_path), str(age_run["images"]), "--sex", "F",
                                 "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert "16 of 16 predicted" in result.output
    result = runner.invoke(app, ["evaluate", str(model.model_path), str(age_run["run"]), "--labels",
                                 str(age_run["labels"]), "--out", str(tmp_path / "ev"), "--split-file",
                                 str(model.out / "split.csv"), "--split", "val"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    saved = json.loads((model.out / "metrics.json").read_text())["val"]
    assert metrics["all"]["n"] == 4 and metrics["all"]["mae"] == pytest.approx(saved["all"]["mae"], abs=1e-4)
    assert metrics["interval_coverage"] == saved["interval_coverage"]
    assert (tmp_path / "ev" / "scatter.png").is_file() and (tmp_path / "ev" / "curves.png").is_file()
    result = runner.invoke(app, ["predict", str(model.model_path), str(age_run["images"]), "--out",
                                 str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "exactly one of --sex-from" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,boneage,male\nph0050000,old,True\n")
    result = runner.invoke(app, ["train-resnet34", str(age_run["run"]), "--labels", str(bad), "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 2 and "line 2: id ph0050000: boneage 'old'" in result.output
