"""The segment stage inside pipelines: model paths, validation, caching keyed by the model file."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from handprep.pipeline.config import ConfigError, load_config
from handprep.pipeline.runner import run_pipeline
from handprep.segment.metrics import dice
from handprep.io import read_mask
from handprep.segment.model import load_model, save_model


def pipeline(tmp_path, images, model, out="out", stages=None):
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"images": str(images)}, "output": str(tmp_path / out), "workers": 1,
        "export": {"save_masks": True},
        "stages": stages or [{"segment": {"model": model}}, {"fill_contours": {"min_area_ratio": 0.05}}, "overlay"]}))
    return path


def test_segment_stage_in_a_run_and_its_cache(phantom_model, seg_phantoms, tmp_path):
    model = tmp_path / "models" / "seg.pt"
    model.parent.mkdir()
    shutil.copy(phantom_model.model_path, model)
    config = load_config(pipeline(tmp_path, seg_phantoms["images"], "models/seg.pt"))  # relative to the YAML
    assert config.stages[0].params["model"] == str(model)
    summary = run_pipeline(config, progress=False)
    assert summary.counts["ok"] == 10
    scores = [dice(read_mask(Path(config.output) / r["mask_output"]), read_mask(seg_phantoms["masks"] / f"{r['id']}.png"))
              for r in summary.rows]
    assert np.mean(scores) > 0.9
    assert all(0.1 < float(r["segment.mask_area"]) < 0.7 for r in summary.rows)
    # changing a later stage reuses the cached U-Net masks
    later = load_config(pipeline(tmp_path, seg_phantoms["images"], str(model),
                                 stages=[{"segment": {"model": str(model)}}, {"fill_contours": {}}, "overlay"]))
    assert {r["cached"] for r in run_pipeline(later, progress=False).rows} == {"segment"}
    assert {r["cached"] for r in run_pipeline(later, progress=False).rows} == {"all"}
    # retraining (another model file at the same path) misses the cache from the segment stage on
    net, meta = load_model(model)
    save_model(model, net, {**meta, "retrained": True})
    assert {r["cached"] for r in run_pipeline(later, progress=False).rows} == {""}


def test_missing_or_wrong_model_is_a_config_error(tmp_path, seg_phantoms):
    with pytest.raises(ConfigError, match=r"line \d+: .*missing.pt: model file not found"):
        load_config(pipeline(tmp_path, seg_phantoms["images"], "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a loadable model file"):
        load_config(pipeline(tmp_path, seg_phantoms["images"], "junk.pt"))


def test_segment_stage_reports_quality_in_the_manifest(phantom_model, seg_phantoms, tmp_path):
    config = load_config(pipeline(tmp_path, seg_phantoms["images"], str(phantom_model.model_path), out="q"))
    rows = run_pipeline(config, progress=False).rows
    assert all(0.05 < float(r["segment.quality_area"]) < 0.7 for r in rows)
    assert all(float(r["segment.quality_confidence"]) > 0.5 and int(r["segment.quality_components"]) >= 1
               for r in rows)
    assert {"segment.flags", "segment.doubtful", "segment.quality_border_contact"} <= set(rows[0])


def test_stride_larger_than_the_model_tile_is_a_config_error(phantom_model, seg_phantoms, tmp_path):
    with pytest.raises(ConfigError, match="stride_px 100 is larger than the 64 px tile"):
        load_config(pipeline(tmp_path, seg_phantoms["images"], str(phantom_model.model_path),
                             stages=[{"segment": {"model": str(phantom_model.model_path), "stride_px": 100}}]))
