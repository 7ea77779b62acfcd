"""pipelines.yaml validation: every mistake is caught before any image is read, with its line."""

import pytest

from handprep.pipeline.config import ConfigError, load_config, parse_config
from tests.conftest import REFERENCE_STAGES, REPO


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    return tmp_path


def parse(text, folders, **kw):
    return parse_config(text, "p.yaml", folders, **kw)


GOOD = """\
input:
  images: imgs
  masks: masks
output: out
stages:
  - low_contrast: {fraction_threshold: 0.1}
  - fill_contours
  - clahe: {clip_limit: 2}
"""


def test_valid_config_resolves_paths_and_defaults(folders):
    config = parse(GOOD, folders)
    assert config.input.images == str(folders / "imgs") and config.output == str(folders / "out")
    assert [s.name for s in config.stages] == ["low_contrast", "fill_contours", "clahe"]
    assert config.stages[0].params == {"fraction_threshold": 0.1, "lower_percentile": 1.0, "upper_percentile": 99.0}
    assert config.stages[2].params["clip_limit"] == 2.0 and isinstance(config.stages[2].params["clip_limit"], float)
    assert config.stages[2].line == 8
    assert config.workers == 0 and config.backend == "loky" and config.export.pack


def test_cli_overrides_win(folders, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    config = parse(GOOD, folders, images=str(other), output="elsewhere", workers=3)
    assert config.input.images == str(other) and config.output == "elsewhere" and config.workers == 3


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("clahe: {clip_limit: 2}", "clahe: {clip: 2}"),
     "p.yaml line 8: stage 'clahe' has no parameter 'clip'; valid parameters: clip_limit, tile_grid"),
    (GOOD.replace("clahe: {clip_limit: 2}", "clahe: {clip_limit: high}"),
     "p.yaml line 8: clahe.clip_limit must be a number, got 'high'"),
    (GOOD.replace("clahe: {clip_limit: 2}", "clahe: {clip_limit: 0}"),
     "clahe.clip_limit must be ≥ 0.1, got 0.0"),
    (GOOD.replace("clahe: {clip_limit: 2}", "clahe: {tile_grid: 2.5}"),
     "clahe.tile_grid must be a whole number"),
    (GOOD.replace("clahe: {clip_limit: 2}", "clahe: {adaptive: 'yes'}"),
     "clahe.adaptive must be true or false"),
    (GOOD.replace("clahe: {clip_limit: 2}", "resize: {interpolation: nearest}"),
     "resize.interpolation is 'nearest'; valid choices: 'area', 'linear', 'cubic'"),
    (GOOD.replace("- fill_contours", "- fill_contour"),
     "p.yaml line 7: unknown stage 'fill_contour'; valid stages: clahe, "),
    (GOOD.replace("output: out", "outptu: out"), "p.yaml line 4: unknown key 'outptu'; valid keys:"),
    (GOOD.replace("  masks: masks", "  mask: masks"), "line 3: unknown key 'input.mask'"),
    (GOOD.replace("output: out\n", ""), "output is missing"),
    (GOOD.replace("imgs", "nowhere"), "line 2: input folder "),
    (GOOD.replace("masks: masks", "masks: nomasks"), "mask folder "),
    ("input: imgs\noutput: out\nstages: 3\n", "stages must be a list"),
    ("input: imgs\noutput: out\nstages: []\n", "stages is empty"),
    ("input: imgs\noutput: out\nstages:\n  - overlay\n",
     "line 4: stage 'overlay' needs a hand mask but none exists at this point"),
    ("input: imgs\noutput: out\nstages:\n  - clahe: {clip_limit: 3\n  - sharpen\n", "line 6: not valid YAML"),
    ("input: imgs\noutput: out\nstages:\n  - clahe\n   sharpen: 1\n", "line 5: not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
    (GOOD + "workers: -1\n", "workers must be a whole number ≥ 0"),
    (GOOD + "backend: spark\n", "backend 'spark' is unknown; valid: loky, threading, sequential, dask"),
    (GOOD + "export: {pack: maybe}\n", "export.pack must be true or false"),
    (GOOD.replace("  masks: masks", "  masks: masks\n  labels: nolabels.csv"), "labels file "),
])
def test_invalid_configs_name_the_problem(folders, text, message):
    with pytest.raises(ConfigError) as err:
        parse(text, folders)
    assert message in str(err.value)


def test_mask_stage_allowed_after_segmenter(folders):
    text = "input: imgs\noutput: out\nstages:\n  - threshold_mask\n  - overlay\n"
    assert [s.name for s in parse(text, folders).stages] == ["threshold_mask", "overlay"]


def test_shipped_pipeline_is_the_packaged_default_and_valid(tmp_path):
    shipped = REPO / "pipelines.yaml"
    packaged = REPO / "handprep" / "defaults" / "pipelines.yaml"
    assert shipped.read_text() == packaged.read_text()
    (tmp_path / "imgs").mkdir()
    config = load_config(shipped, images=str(tmp_path / "imgs"), output=str(tmp_path / "o"))
    names = [s.name for s in config.stages]
    # the reference order of SPEC.md: exclusion → mask → fill → dilate → overlay → CLAHE → sharpen → resize
    order = ["low_contrast", "fill_contours", "dilate", "overlay", "clahe", "sharpen", "resize"]
    assert [n for n in names if n in order] == order
    params = {s.name: s.params for s in config.stages}
    assert params["dilate"] == {"kernel": 11, "iterations": 1}
    assert params["clahe"]["clip_limit"] == 3.0 and params["clahe"]["tile_grid"] == 8
    assert params["resize"]["size_px"] == 384 and params["fill_contours"]["threshold"] == 127


def test_reference_stage_list_of_tests_is_valid(folders):
    import yaml

    text = yaml.safe_dump({"input": {"images": "imgs", "masks": "masks"}, "output": "o", "stages": REFERENCE_STAGES})
    assert len(parse(text, folders).stages) == len(REFERENCE_STAGES)
