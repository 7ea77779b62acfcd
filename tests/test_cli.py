"""The command line as users and scripts meet it: options, outputs, exit codes, messages."""
from __future__ import annotations

import csv

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from handprep.stages import load_stages
from tests.conftest import REFERENCE_STAGES

runner = CliRunner()


@pytest.fixture
def pipeline_file(tmp_path, phantom_set):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"images": "nowhere-yet", "masks": str(phantom_set["masks"])},
        "output": "out", "stages": REFERENCE_STAGES}))
    return path


def test_help_lists_commands_and_option_defaults():
    result = runner.invoke(app, ["--help"])
    for command in ("run", "check", "stages", "inspect", "demo", "phantoms"):
        assert command in result.output
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0 and "--workers" in result.output and "manifest.csv" in result.output


def test_run_with_overrides_exit_zero(pipeline_file, phantom_set, tmp_path):
    out = tmp_path / "elsewhere"
    result = runner.invoke(app, ["run", str(pipeline_file), "--input", str(phantom_set["images"]),
                                 "--output", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "8 images" in result.output and "8 ok, 0 dropped, 0 failed" in result.output
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {"path", "status", "reason"} <= set(rows[0]) and {r["status"] for r in rows} == {"ok"}
    assert not (tmp_path / "out").exists()  # the override won


def test_run_exit_one_when_an_image_failed(pipeline_file, phantom_set, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for p in list(phantom_set["images"].glob("*.png"))[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = runner.invoke(app, ["run", str(pipeline_file), "-i", str(images), "-o", str(tmp_path / "o"), "-w", "1"])
    assert result.exit_code == 1
    assert "broken.png" in result.output and "failed" in result.output


def test_invalid_config_exit_two_with_line(tmp_path, phantom_set):
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: {phantom_set['images']}\noutput: o\nstages:\n  - clahe: {{clip_limt: 3}}\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "line 4: stage 'clahe' has no parameter 'clip_limt'" in result.output
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2


def test_check_and_stages(pipeline_file, phantom_set):
    result = runner.invoke(app, ["check", str(pipeline_file)])
    assert result.exit_code == 2 and "input folder" in result.output  # nowhere-yet does not exist
    text = pipeline_file.read_text().replace("nowhere-yet", str(phantom_set["images"]))
    pipeline_file.write_text(text)
    result = runner.invoke(app, ["check", str(pipeline_file)])
    assert result.exit_code == 0 and "valid" in result.output and "clahe → sharpen" in result.output
    result = runner.invoke(app, ["stages"])
    for name, stage in load_stages().items():
        assert name in result.output
        for param in stage.params:
            assert param in result.output


def test_inspect_writes_a_sheet_with_a_column_per_stage(pipeline_file, phantom_set, tmp_path):
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["inspect", str(pipeline_file), "-i", str(phantom_set["images"]),
                                 "--out", str(out), "--n", "3", "--cell-px", "100"])
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(out))
    assert sheet.shape == (22 + 3 * 100, 100 * (len(REFERENCE_STAGES) + 1), 3)
    result = runner.invoke(app, ["inspect", str(pipeline_file), "-i", str(phantom_set["images"]),
                                 "--out", str(out), "--id", "nope"])
    assert result.exit_code == 2 and "no input image with id nope" in result.output


def test_demo_runs_the_reference_chain_on_phantoms(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--n", "4", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "7 images" in result.output and "6 ok, 1 dropped, 0 failed" in result.output
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "d" / "run" / "manifest.csv"))}
    assert rows["ph000-lowcontrast"]["status"] == "dropped"
    assert rows["ph000-16bit"]["dtype"] == "uint16" and rows["ph000-16bit"]["status"] == "ok"
    assert float(rows["ph000-inverted"]["polarity.median_level"]) > 0.5  # it was flipped
    assert (tmp_path / "d" / "run" / "dataset" / "images.npy").is_file()
    assert (tmp_path / "d" / "run" / "inspect.png").is_file()


def test_phantoms_command(tmp_path):
    result = runner.invoke(app, ["phantoms", str(tmp_path / "p"), "--n", "2", "--height", "130", "--width", "100",
                                 "--bits", "16"])
    assert result.exit_code == 0
    image = cv2.imread(str(tmp_path / "p" / "images" / "ph0000000.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (130, 100) and image.dtype.name == "uint16"
    assert (tmp_path / "p" / "labels.csv").read_text().startswith("id,boneage,male")
