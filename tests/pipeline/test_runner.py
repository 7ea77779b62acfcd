"""The batch runner: outputs, manifest, bad inputs, cache, resume after kill -9, lock, dask."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from handprep.io import read_image, write_png
from handprep.pipeline.config import load_config
from handprep.pipeline.labels import LabelsError
from handprep.pipeline.lock import OutputLock, OutputLockedError
from handprep.pipeline.runner import run_pipeline
from handprep.stages import enhance, geometry, mask as mask_stages
from handprep.synth import phantom, write_phantom_set
from tests.conftest import REFERENCE_STAGES, REPO


def read_manifest(folder: Path) -> dict[str, dict]:
    with open(folder / "manifest.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def output_hashes(folder: Path) -> dict[str, str]:
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("images", "masks") for p in sorted((folder / sub).glob("*.png"))}


@pytest.fixture
def config_for(write_pipeline, tmp_path):
    def make(images, masks=None, labels=None, stages=REFERENCE_STAGES, out="out", **extra):
        data = {"input": {"images": str(images)}, "output": str(tmp_path / out), "workers": 1, "stages": stages}
        if masks:
            data["input"]["masks"] = str(masks)
        if labels:
            data["input"]["labels"] = str(labels)
        data.update(extra)
        return load_config(write_pipeline(data, f"{out}.yaml"))

    return make


def test_run_writes_exact_outputs_manifest_dataset_and_run_record(phantom_set, config_for):
    config = config_for(phantom_set["images"], phantom_set["masks"], phantom_set["labels"])
    summary = run_pipeline(config, progress=False)
    out = Path(config.output)
    assert summary.exit_code == 0 and summary.counts["ok"] == 8

    # the first image, by hand, stage by stage
    case_id = phantom_set["ids"][0]
    image = read_image(phantom_set["images"] / f"{case_id}.png")
    mask = read_image(phantom_set["masks"] / f"{case_id}.png")
    mask = mask_stages.dilate(mask_stages.fill_contours(mask), kernel=11)
    expected = geometry.resize(enhance.sharpen(enhance.clahe(mask_stages.overlay(image, mask))), mask, size_px=128)
    assert np.array_equal(read_image(out / "images" / f"{case_id}.png"), expected.image)
    assert np.array_equal(read_image(out / "masks" / f"{case_id}.png"), expected.mask)

    rows = read_manifest(out)
    row = rows[case_id]
    assert row["status"] == "ok" and row["reason"] == "" and row["output"] == f"images/{case_id}.png"
    assert row["sha256"] == hashlib.sha256((phantom_set["images"] / f"{case_id}.png").read_bytes()).hexdigest()
    assert float(row["low_contrast.contrast"]) > 0.3 and float(row["resize.scale"]) == pytest.approx(128 / 520, abs=1e-5)
    assert 0.1 < float(row["dilate.mask_area"]) < 0.6 and row["height"] == "520" and row["dtype"] == "uint8"
    assert "clahe=" in row["stage_ms"]

    packed = np.load(out / "dataset" / "images.npy", mmap_mode="r")
    assert packed.shape == (8, 128, 128) and packed.dtype == np.uint8
    with open(out / "dataset" / "index.csv", newline="") as handle:
        index = list(csv.DictReader(handle))
    with open(phantom_set["labels"], newline="") as handle:
        labels = {r["id"]: r for r in csv.DictReader(handle)}
    for i, entry in enumerate(index):
        assert np.array_equal(packed[i], read_image(out / entry["image"]))
        assert float(entry["boneage"]) == pytest.approx(float(labels[entry["id"]]["boneage"]))
        assert entry["male"] == ("1" if labels[entry["id"]]["male"] == "True" else "0")

    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 0 and record["counts"]["ok"] == 8 and record["finished"]
    assert record["config"]["stages"][3] == {"dilate": {"kernel": 11, "iterations": 1}}
    assert {"handprep", "numpy", "opencv"} <= set(record["versions"])


def _bad_input_folder(root: Path) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    good = [phantom(seed=s, height=260, width=200) for s in range(3)]
    for name, p in zip(("good1", "good2"), good):
        write_png(images / f"{name}.png", p.image)
        write_png(masks / f"{name}.png", p.mask)
    data = (images / "good1.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 3])
    (images / "empty.png").write_bytes(b"")
    (images / "text.png").write_text("patient list\nid,name\n")
    (images / "gif.png").write_bytes(b"GIF89a" + b"\0" * 50)
    write_png(images / "tiny.png", np.full((4, 4), 100, np.uint8))
    write_png(images / "black.png", np.zeros((260, 200), np.uint8))
    write_png(images / "nomask.png", good[2].image)
    write_png(images / "wrongsize.png", good[2].image)
    write_png(masks / "wrongsize.png", cv2.resize(good[2].mask, (100, 130), interpolation=cv2.INTER_NEAREST))
    # flavours that must work
    cv2.imwrite(str(images / "deep16.png"), good[0].image.astype(np.uint16) * 257)
    Image.fromarray(good[0].image).convert("P").save(images / "palette.png")
    cv2.imwrite(str(images / "rgba.png"), cv2.merge([good[0].image] * 3 + [np.full_like(good[0].image, 255)]))
    cv2.imwrite(str(images / "jpeg_named.png.jpg"), good[0].image)
    for name in ("truncated", "empty", "text", "gif", "tiny", "black", "deep16", "palette", "rgba",
                 "jpeg_named.png"):
        write_png(masks / f"{name}.png", good[0].mask if name not in ("tiny",) else np.zeros((4, 4), np.uint8))
    return images, masks


def test_each_bad_input_gets_its_reason_and_the_rest_succeed(tmp_path, config_for):
    images, masks = _bad_input_folder(tmp_path / "in")
    stages = [{"low_contrast": {}}, "to_uint8", "fill_contours", "overlay", {"resize": {"size_px": 64}}]
    config = config_for(images, masks, stages=stages, workers=2)
    summary = run_pipeline(config, progress=False)
    rows = read_manifest(Path(config.output))
    expected = {
        "truncated": ("failed", "truncated"),
        "empty": ("failed", "file is empty"),
        "text": ("failed", "looks like text"),
        "gif": ("failed", "GIF"),
        "tiny": ("failed", "image is 4×4 px, smaller than input.min_side_px=32"),
        "black": ("dropped", "low contrast: 0.0000"),
        "nomask": ("failed", "no mask for 'nomask'"),
        "wrongsize": ("failed", "is 100×130 px but the image is 200×260 px"),
    }
    for case_id, (status, reason) in expected.items():
        assert rows[case_id]["status"] == status, (case_id, rows[case_id]["reason"])
        assert reason in rows[case_id]["reason"], (case_id, rows[case_id]["reason"])
        assert case_id in rows[case_id]["reason"] or str(images) in rows[case_id]["reason"] \
            or status == "dropped" or case_id == "tiny"
    for case_id in ("good1", "good2", "deep16", "palette", "rgba", "jpeg_named.png"):
        assert rows[case_id]["status"] == "ok", (case_id, rows[case_id]["reason"])
    assert rows["deep16"]["dtype"] == "uint16"
    # the 16-bit, palette and RGBA copies of good[0] give the same final image as the 8-bit original
    out = Path(config.output)
    reference = read_image(out / "images" / "jpeg_named.png.png").astype(int)
    for case_id in ("deep16", "palette", "rgba"):
        assert np.abs(read_image(out / "images" / f"{case_id}.png").astype(int) - reference).mean() < 3
    assert summary.exit_code == 1 and summary.counts["failed"] == 7 and summary.counts["dropped"] == 1
    assert sorted(p.stem for p in (out / "images").glob("*.png")) == sorted(
        k for k, r in rows.items() if r["status"] == "ok")


@pytest.mark.slow
def test_huge_image_is_shrunk_on_read_with_two_workers(tmp_path, config_for):
    images, masks = tmp_path / "images", tmp_path / "masks"
    p = phantom(seed=9, height=1200, width=1200, border=False, marker=False)
    huge = cv2.resize(p.image, (12000, 12000), interpolation=cv2.INTER_NEAREST)
    write_png(images / "huge.png", huge)
    write_png(masks / "huge.png", cv2.resize(p.mask, (12000, 12000), interpolation=cv2.INTER_NEAREST))
    del huge
    for s in range(3):
        q = phantom(seed=s, height=260, width=200)
        write_png(images / f"small{s}.png", q.image)
        write_png(masks / f"small{s}.png", q.mask)
    config = config_for(images, masks, workers=2)
    summary = run_pipeline(config, progress=False)
    rows = read_manifest(Path(config.output))
    assert summary.counts["ok"] == 4, rows["huge"]["reason"]
    assert rows["huge"]["width"] == "12000" and float(rows["huge"]["read.scale"]) == pytest.approx(4096 / 12000, 1e-5)
    assert float(rows["huge"]["resize.in_width"]) == 4096


def test_rerun_is_served_from_cache_with_identical_outputs(phantom_set, config_for):
    config = config_for(phantom_set["images"], phantom_set["masks"])
    run_pipeline(config, progress=False)
    out = Path(config.output)
    before = output_hashes(out)
    summary = run_pipeline(config, progress=False)
    assert summary.counts["cached"] == 8
    assert {r["cached"] for r in read_manifest(out).values()} == {"all"}
    assert output_hashes(out) == before


def test_changed_parameter_recomputes_from_that_stage(phantom_set, config_for):
    config = config_for(phantom_set["images"], phantom_set["masks"])
    run_pipeline(config, progress=False)
    out = Path(config.output)
    before = output_hashes(out)
    changed = [s if not (isinstance(s, dict) and "clahe" in s) else {"clahe": {"clip_limit": 1.5}}
               for s in REFERENCE_STAGES]
    config2 = config_for(phantom_set["images"], phantom_set["masks"], stages=changed, out="out")
    run_pipeline(config2, progress=False)
    rows = read_manifest(out)
    assert {r["cached"] for r in rows.values()} == {"dilate"}  # the finished mask was reused
    after = output_hashes(out)
    assert all(after[k] != before[k] for k in after if k.startswith("images/"))
    assert all(after[k] == before[k] for k in after if k.startswith("masks/"))
    fresh = config_for(phantom_set["images"], phantom_set["masks"], stages=changed, out="fresh")
    run_pipeline(fresh, progress=False)
    assert output_hashes(Path(fresh.output)) == after


def test_corrupted_cache_entries_and_outputs_are_recomputed(phantom_set, config_for):
    config = config_for(phantom_set["images"], phantom_set["masks"])
    run_pipeline(config, progress=False)
    out = Path(config.output)
    before = output_hashes(out)
    states = sorted((out / ".cache" / "states").rglob("*.bin"))
    records = sorted((out / ".cache" / "records").rglob("*.json"))
    assert len(states) == 8 and len(records) == 8
    record_of = {json.loads(p.read_text())["record"]["row"]["id"]: p for p in records}
    for case_id in phantom_set["ids"][:3]:
        record_of[case_id].write_text('{"record": {"row": {}, "outputs": {}}, "sha256": "bad"}')
    for path in states:
        data = path.read_bytes()
        path.write_bytes(data[:-50] + bytes(50))  # damaged payload
    victim = out / "images" / f"{phantom_set['ids'][5]}.png"
    victim.write_bytes(b"edited by hand")
    summary = run_pipeline(config, progress=False)
    assert summary.exit_code == 0 and summary.counts["cached"] == 4  # 3 bad records + 1 bad output redone
    assert output_hashes(out) == before


def test_killed_run_resumes_to_the_same_outputs(tmp_path, write_pipeline):
    made = write_phantom_set(tmp_path / "in", n=30, seed=3, height=1040, width=800)
    stages = REFERENCE_STAGES[:-1] + [{"resize": {"size_px": 384}}]

    def pipeline(out):
        return write_pipeline({"input": {"images": str(made["images"]), "masks": str(made["masks"])},
                               "output": str(tmp_path / out), "workers": 1, "stages": stages}, f"{out}.yaml")

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.Popen([sys.executable, "-m", "cli.main", "run", str(pipeline("killed"))],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "killed" / ".cache" / "records"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.rglob("*.json"))) < 6:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done_before = len(list(records.rglob("*.json")))
    assert 6 <= done_before < 30, "the run finished before it could be killed"
    left = read_manifest(tmp_path / "killed")  # even kill -9 leaves a manifest: every image, some pending
    assert len(left) == 30 and {r["status"] for r in left.values()} <= {"ok", "pending"}

    resumed = run_pipeline(load_config(pipeline("killed")), progress=False)
    assert resumed.counts["cached"] >= done_before - 1 and resumed.counts["ok"] == 30
    clean = run_pipeline(load_config(pipeline("clean")), progress=False)
    assert clean.counts["ok"] == 30
    assert output_hashes(tmp_path / "killed") == output_hashes(tmp_path / "clean")
    assert not list((tmp_path / "killed").rglob("*.tmp"))


def test_second_run_on_same_output_is_refused(phantom_set, config_for):
    config = config_for(phantom_set["images"], phantom_set["masks"])
    with OutputLock(config.output):
        with pytest.raises(OutputLockedError, match="another handprep run is writing here"):
            run_pipeline(config, progress=False)
    assert run_pipeline(config, progress=False).exit_code == 0  # released


def test_bad_labels_stop_before_any_image(phantom_set, config_for, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,boneage,male\nph0010000,abc,True\n")
    config = config_for(phantom_set["images"], phantom_set["masks"], labels)
    with pytest.raises(LabelsError, match="line 2: boneage 'abc' is not a number"):
        run_pipeline(config, progress=False)
    assert not (Path(config.output) / "images").exists()
    labels.write_text("image,age\n1,2\n")
    with pytest.raises(LabelsError, match="missing column"):
        run_pipeline(config, progress=False)


def test_missing_labels_are_reported_not_fatal(phantom_set, config_for, tmp_path):
    labels = tmp_path / "labels.csv"
    lines = (phantom_set["labels"]).read_text().splitlines()
    labels.write_text("\n".join(lines[:-2]) + "\n")  # drop the last two
    summary = run_pipeline(config_for(phantom_set["images"], phantom_set["masks"], labels), progress=False)
    assert summary.exit_code == 0
    assert any("2 of 8 packed images have no row in the labels file" in m for m in summary.messages)


def test_duplicate_stems_fail_the_second(tmp_path, config_for):
    images = tmp_path / "images"
    p = phantom(seed=1, height=260, width=200)
    write_png(images / "a.png", p.image)
    cv2.imwrite(str(images / "a.tif"), p.image)
    config = config_for(images, stages=["threshold_mask", "overlay", {"resize": {"size_px": 64}}])
    run_pipeline(config, progress=False)
    rows = list(csv.DictReader(open(Path(config.output) / "manifest.csv")))
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]
    assert "same name stem 'a'" in next(r["reason"] for r in rows if r["status"] == "failed")


def test_dask_distributed_gives_the_same_outputs_as_loky(phantom_set, config_for):
    pytest.importorskip("dask.distributed")
    local = config_for(phantom_set["images"], phantom_set["masks"], out="loky", workers=2)
    run_pipeline(local, progress=False)
    dask = config_for(phantom_set["images"], phantom_set["masks"], out="dask", workers=2, backend="dask")
    system_temp = set(Path(tempfile.gettempdir()).glob("dask-scratch-space*"))
    summary = run_pipeline(dask, progress=False)
    assert summary.counts["ok"] == 8
    assert set(Path(tempfile.gettempdir()).glob("dask-scratch-space*")) == system_temp  # scratch stays in the output
    assert output_hashes(Path(dask.output)) == output_hashes(Path(local.output))
    strip = lambda rows: {k: {c: v for c, v in r.items() if c not in ("seconds", "stage_ms")} for k, r in rows.items()}
    assert strip(read_manifest(Path(dask.output))) == strip(read_manifest(Path(local.output)))
