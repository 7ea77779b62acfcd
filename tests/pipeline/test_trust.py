"""Issue 9: inputs are never touched, reuse is verified, runs stop cleanly and re-run cheaply."""
from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from handprep.io import write_png
from handprep.pipeline import runner as runner_module
from handprep.pipeline.config import ConfigError, load_config
from handprep.pipeline.dataset import PackedDatasetError, load_packed, verify_packed
from handprep.pipeline.runner import OutputError, run_pipeline
from handprep.synth import write_phantom_set
from tests.conftest import REFERENCE_STAGES, REPO
from tests.test_io import _write_dicom

cli = CliRunner()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest(folder: Path) -> dict[str, dict]:
    with open(folder / "manifest.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def small_set(tmp_path):
    return write_phantom_set(tmp_path / "data", n=4, seed=5)


def pipeline_file(tmp_path, images, output, masks=None, stages=REFERENCE_STAGES, workers=1, name="p.yaml"):
    data = {"input": {"images": str(images), **({"masks": str(masks)} if masks else {})},
            "output": str(output), "workers": workers, "stages": stages}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# 1. data loss -------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["parent", "same", "inside", "mask_parent"])
def test_output_overlapping_an_input_is_refused_and_inputs_stay_identical(tmp_path, small_set, where):
    images, masks = small_set["images"], small_set["masks"]
    (images / "unreadable.png").write_bytes(b"not a png")  # the kind of file the old bug deleted
    output = {"parent": images.parent, "same": images, "inside": images / "out", "mask_parent": masks}[where]
    before = tree_hashes(images.parent)
    pipeline = pipeline_file(tmp_path, images, output, masks)
    result = cli.invoke(app, ["run", str(pipeline)])
    assert result.exit_code == 2, result.output
    assert "must be separate from the inputs" in result.output
    assert tree_hashes(images.parent) == before
    assert not (images / "out").exists()
    valid = load_config(pipeline_file(tmp_path, images, tmp_path / "ok", masks))
    with pytest.raises(OutputError, match="separate from the inputs"):  # the library refuses too
        run_pipeline(dataclasses.replace(valid, output=str(output)), progress=False)
    assert tree_hashes(images.parent) == before


def test_glob_input_and_symlinked_output_are_compared_by_real_path(tmp_path, small_set):
    link = tmp_path / "link-to-data"
    link.symlink_to(small_set["images"].parent)
    with pytest.raises(ConfigError, match="contains the input folder"):
        load_config(pipeline_file(tmp_path, str(small_set["images"] / "*.png"), link, small_set["masks"]))


def test_a_run_deletes_only_files_it_wrote(tmp_path, small_set):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "my-own.png").write_bytes(b"a user's file")
    config = load_config(pipeline_file(tmp_path, small_set["images"], out, small_set["masks"]))
    assert run_pipeline(config, progress=False).counts["ok"] == 4
    assert (out / "images" / "my-own.png").read_bytes() == b"a user's file"


# 2. the packed dataset is verified --------------------------------------------------------

def test_truncated_or_missing_pack_is_rebuilt_and_refused_by_consumers(tmp_path, small_set):
    config = load_config(pipeline_file(tmp_path, small_set["images"], tmp_path / "out", small_set["masks"]))
    run_pipeline(config, progress=False)
    dataset = tmp_path / "out" / "dataset"
    good = (dataset / "images.npy").read_bytes()
    assert verify_packed(dataset) == [] and load_packed(dataset)[0].shape[0] == 4

    (dataset / "images.npy").write_bytes(good[:-1000])
    assert "truncated" in verify_packed(dataset)[0]
    with pytest.raises(PackedDatasetError, match="truncated"):
        load_packed(dataset)
    summary = run_pipeline(config, progress=False)
    assert any("rebuilt" in m for m in summary.messages)
    assert (dataset / "images.npy").read_bytes() == good and verify_packed(dataset) == []

    (dataset / "index.csv").unlink()
    run_pipeline(config, progress=False)
    assert verify_packed(dataset) == [] and load_packed(dataset)[1][0]["id"] == small_set["ids"][0]


# 3 and 9. every input entry is reported; DICOM by content; links outside are not read ------

def test_extensionless_dicom_is_read_and_other_entries_are_reported(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    pixels = np.zeros((200, 160), np.uint16)
    pixels[40:160, 40:120] = 3000
    _write_dicom(images / "IM0001", pixels)
    (images / "notes.txt").write_text("not an image")
    (images / "sub").mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    (images / "leak.png").symlink_to(secret)
    stages = ["to_uint8", {"resize": {"size_px": 64}}]
    summary = run_pipeline(load_config(pipeline_file(tmp_path, images, tmp_path / "out", stages=stages)),
                           progress=False)
    rows = manifest(tmp_path / "out")
    assert rows["IM0001"]["status"] == "ok" and rows["IM0001"]["format"] == "dicom"
    assert rows["notes.txt"]["status"] == "skipped" and "not a radiograph" in rows["notes.txt"]["reason"]
    assert rows["sub"]["status"] == "skipped" and "folder" in rows["sub"]["reason"]
    assert rows["leak.png"]["status"] == "skipped" and "outside the input folder" in rows["leak.png"]["reason"]
    assert "TOP-SECRET" not in (tmp_path / "out" / "manifest.csv").read_text()
    assert summary.exit_code == 0 and summary.counts["skipped"] == 3


def test_run_json_records_model_hash_and_versions(tmp_path, small_set):
    stages = ["to_uint8", {"segment": {"model": "default"}}, {"resize": {"size_px": 64}}]
    config = load_config(pipeline_file(tmp_path, small_set["images"], tmp_path / "out", stages=stages))
    info = runner_module.environment(config)
    from handprep.segment.files import DEFAULT_MODEL, file_digest

    assert info["stage_files"] == {"1:segment": {"model_sha256": file_digest(DEFAULT_MODEL)}}
    for name in ("torch", "segmentation-models-pytorch", "timm", "pydicom", "joblib"):
        assert info["versions"][name], name


# 4. read-only output, full disk -------------------------------------------------------------

def test_unwritable_output_is_one_line_exit_2(tmp_path, small_set):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli.invoke(app, ["run", str(pipeline_file(tmp_path, small_set["images"], blocker / "out", small_set["masks"]))])
    assert result.exit_code == 2 and "cannot write to the output folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_full_disk_stops_with_a_manifest_and_resumes(tmp_path, small_set, monkeypatch):
    config = load_config(pipeline_file(tmp_path, small_set["images"], tmp_path / "out", small_set["masks"]))
    calls = []
    real_write = runner_module.write_png

    def filling_disk(path, image, compression=1):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, image, compression)

    monkeypatch.setattr(runner_module, "write_png", filling_disk)
    summary = run_pipeline(config, progress=False)
    assert summary.exit_code == 4 and "disk is full" in summary.stopped
    rows = manifest(tmp_path / "out")
    assert [r["status"] for r in rows.values()].count("ok") == 2 and len(rows) == 4
    assert all("run again" in r["reason"] for r in rows.values() if r["status"] == "pending")
    assert not (tmp_path / "out" / ".cache" / ".reserve").exists()

    monkeypatch.setattr(runner_module, "write_png", real_write)
    resumed = run_pipeline(config, progress=False)
    assert resumed.exit_code == 0 and resumed.counts["ok"] == 4 and resumed.counts["cached"] == 2


def test_packing_checks_free_space_first(tmp_path, small_set, monkeypatch):
    import shutil

    from handprep.pipeline import dataset

    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 1000))
    config = load_config(pipeline_file(tmp_path, small_set["images"], tmp_path / "out", small_set["masks"]))
    summary = run_pipeline(config, progress=False)
    assert any("free some space" in m for m in summary.messages)
    assert len(manifest(tmp_path / "out")) == 4 and not (tmp_path / "out" / "dataset" / "images.npy").exists()


# 5. SIGTERM --------------------------------------------------------------------------------

def test_sigterm_stops_workers_writes_manifest_and_exits_143(tmp_path):
    psutil = pytest.importorskip("psutil")
    made = write_phantom_set(tmp_path / "in", n=40, seed=3, height=1040, width=800)
    stages = REFERENCE_STAGES[:-1] + [{"resize": {"size_px": 384}}]
    pipeline = pipeline_file(tmp_path, made["images"], tmp_path / "out", made["masks"], stages=stages, workers=2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", str(pipeline)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    records = tmp_path / "out" / ".cache" / "records"
    children: set = set()
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.rglob("*.json"))) < 4:
        children |= set(psutil.Process(proc.pid).children(recursive=True))
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "resume" in err
    rows = manifest(tmp_path / "out")
    assert len(rows) == 40 and "pending" in {r["status"] for r in rows.values()}
    time.sleep(0.5)
    assert children and not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


# 6 and 7. warm re-runs read and compare only; workers load the model once --------------------

def test_warm_rerun_imports_no_torch(tmp_path, small_set):
    stages = ["to_uint8", {"segment": {"model": "default"}}, "overlay", {"resize": {"size_px": 64}}]
    pipeline = pipeline_file(tmp_path, small_set["images"], tmp_path / "out", stages=stages)
    script = ("import sys; from handprep.pipeline import load_config, run_pipeline; "
              f"s = run_pipeline(load_config({str(pipeline)!r}), progress=False); "
              "print(s.counts['cached'], s.counts['ok'], 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cold = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    warm = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert cold.stdout.split() == ["0", "4", "True"]
    assert warm.stdout.split() == ["4", "4", "False"]


def _worker_report(case, plan):
    from handprep.segment.infer import _cached

    return {"id": case.id, "pid": os.getpid(), "models_loaded": _cached.cache_info().currsize, "status": "ok"}


def test_pool_workers_load_the_model_once_before_their_first_image(tmp_path, small_set):
    from handprep.pipeline.executor import map_cases

    stages = ["to_uint8", {"segment": {"model": "default"}}]
    config = load_config(pipeline_file(tmp_path, small_set["images"], tmp_path / "out", stages=stages, workers=2))
    plan = runner_module.build_plan(config)
    cases, _ = runner_module.find_cases(config)
    reports = list(map_cases(_worker_report, cases * 6, plan, plan.warmups, tmp_path / "scratch"))
    assert len(reports) == 24 and {r["models_loaded"] for r in reports} == {1}
    assert len({r["pid"] for r in reports}) <= 2  # no worker restarted (psutil's leak check)


# 8. check validates what run would run -------------------------------------------------------

def test_check_takes_the_same_overrides_as_run(tmp_path, small_set):
    shipped = REPO / "pipelines.yaml"
    bare = cli.invoke(app, ["check", str(shipped)])
    assert bare.exit_code == 2 and "--input" in bare.output
    result = cli.invoke(app, ["check", str(shipped), "--input", str(small_set["images"]),
                              "--output", str(tmp_path / "out"), "--labels", str(small_set["labels"])])
    assert result.exit_code == 0 and "valid" in result.output, result.output
    overlap = cli.invoke(app, ["check", str(shipped), "--input", str(small_set["images"]),
                               "--output", str(small_set["images"])])
    assert overlap.exit_code == 2 and "separate from the inputs" in overlap.output
