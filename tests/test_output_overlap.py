"""Every command that writes refuses an output that is, contains or lies inside one of its inputs."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from handprep.io import OutputOverlapError, output_overlap, refuse_output_overlap
from handprep.synth import write_phantom_set
from tests.conftest import REFERENCE_STAGES

cli = CliRunner()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path):
    made = write_phantom_set(tmp_path / "data", n=2, seed=3)
    for name in ("model.pt", "labels.csv"):
        (tmp_path / "data" / name).write_bytes(b"stand-in: the overlap check comes before any reading")
    (tmp_path / "data" / "dataset").mkdir()
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump({"input": {"images": str(made["images"]), "masks": str(made["masks"])},
                                        "output": str(tmp_path / "run"), "stages": REFERENCE_STAGES}))
    return {"root": tmp_path / "data", "images": made["images"], "masks": made["masks"], "pipeline": pipeline}


# --- the rule, on paths --------------------------------------------------------------------

@pytest.mark.parametrize("output, relation", [("images", "is"), ("images/out", "lies inside"),
                                              (".", "contains"), ("masks", None), ("sibling", None)])
def test_output_overlap_names_the_relation(tmp_path, output, relation):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    problem = output_overlap(tmp_path / output, {"image folder": tmp_path / "images"})
    if relation is None:
        assert problem is None
    else:
        assert f"{relation} the image folder" in problem and "choose another --out" in problem


def test_files_globs_and_symlinks_count(tmp_path):
    (tmp_path / "images").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("id\n")
    assert output_overlap(tmp_path / "images" / "preds.csv", {"radiographs": tmp_path / "images" / "*.png"})
    assert "contains the labels file" in output_overlap(tmp_path, {"labels file": labels})
    assert output_overlap(tmp_path / "other.csv", {"labels file": labels}) is None
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "images")
    assert "is the image folder" in output_overlap(link, {"image folder": tmp_path / "images"})
    assert output_overlap(tmp_path / "out", {"masks": None}) is None
    with pytest.raises(OutputOverlapError, match="separate from the inputs"):
        refuse_output_overlap(tmp_path / "images", {"image folder": tmp_path / "images"})


# --- every writing command refuses, leaves the inputs as they were, and creates nothing ---------

COMMANDS = {
    "segment": lambda d, out: ["segment", str(d["images"]), "--out", str(out)],
    "landmarks": lambda d, out: ["landmarks", str(d["images"]), "--out", str(out), "--masks", str(d["masks"])],
    "masks propose": lambda d, out: ["masks", "propose", str(d["images"]), "--out", str(out)],
    "masks import": lambda d, out: ["masks", "import", str(d["masks"]), "--out", str(out),
                                    "--images", str(d["images"])],
    "segment-train": lambda d, out: ["segment-train", "--images", str(d["images"]), "--masks", str(d["masks"]),
                                     "--out", str(out), "--epochs", "1"],
    "segment-eval": lambda d, out: ["segment-eval", "--images", str(d["images"]), "--masks", str(d["masks"]),
                                    "--out", str(out)],
    "segment-eval --pred": lambda d, out: ["segment-eval", "--pred", str(d["masks"]), "--masks", str(d["masks"]),
                                           "--out", str(out)],
    "inspect": lambda d, out: ["inspect", str(d["pipeline"]), "--out", str(out)],
    "train-resnet34": lambda d, out: ["train-resnet34", str(d["root"] / "dataset"), "--labels",
                                      str(d["root"] / "labels.csv"), "--out", str(out)],
    "predict": lambda d, out: ["predict", str(d["root"] / "model.pt"), str(d["images"]), "--sex", "M",
                               "--out", str(out)],
    "evaluate": lambda d, out: ["evaluate", str(d["root"] / "model.pt"), str(d["root"] / "dataset"),
                                "--labels", str(d["root"] / "labels.csv"), "--out", str(out)],
}
INSIDE = {"segment": "images", "landmarks": "masks", "masks propose": "images", "masks import": "images",
          "segment-train": "masks", "segment-eval": "masks", "segment-eval --pred": "masks",
          "inspect": "images", "train-resnet34": "dataset", "predict": "images", "evaluate": "dataset"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("where", ["inside", "same"])
def test_every_writing_command_refuses_an_output_overlapping_an_input(data, command, where):
    folder = data["root"] / INSIDE[command]
    out = folder / ("out.png" if command == "inspect" else "out.csv" if command == "predict" else "out")
    if where == "same":
        out = folder
    before = tree_hashes(data["root"])
    result = cli.invoke(app, COMMANDS[command](data, out))
    assert result.exit_code == 2, result.output
    assert "must be separate from the inputs" in result.output
    assert tree_hashes(data["root"]) == before
    assert where == "same" or not out.exists()
