"""Real radiographs: RSNA labels parse, and predict runs the reference chain (U-Net mask included)."""
import pytest

from handprep.boneage.data import read_label_table
from handprep.boneage.model import BoneAgeNet, save_model_file
from handprep.boneage.predict import predict_images
from tests.conftest import REPO

pytestmark = pytest.mark.realdata


def test_rsna_labels_parse(rsna60):
    labels = read_label_table(rsna60 / "labels.csv")
    assert len(labels) == 60
    assert all(0 < label.boneage_months <= 240 for label in labels.values())
    assert {label.male for label in labels.values()} == {True, False}


def test_predict_runs_the_recorded_reference_chain_on_real_radiographs(rsna60, tmp_path):
    import yaml

    stages = yaml.safe_load((REPO / "pipelines.yaml").read_text())["stages"]
    stages[-1] = {"resize": {"size_px": 64}}
    arch = {"backbone": "resnet18", "sex_mode": "scalar", "hidden": 8, "dropout": 0.0}
    meta = {"arch": arch, "size_px": 32, "dataset_size_px": 64,
            "norm": {"label_mean": 120.0, "label_std": 40.0, "pixel_mean": 0.2, "pixel_std": 0.25},
            "pipeline": {"stages": stages, "input": {"max_side_px": 4096, "min_side_px": 32}},
            "interval": {"method": "tta+split-conformal", "views": 2, "level": 0.9, "k": 2.0, "s0": 5.0}}
    save_model_file(tmp_path / "model.pt", BoneAgeNet(**arch).eval(), meta)
    images = sorted((rsna60 / "images").glob("*.png"))[:2]
    folder = tmp_path / "two"
    folder.mkdir()
    for path in images:  # copies: links leading outside the input folder are not read
        (folder / path.name).write_bytes(path.read_bytes())
    rows = predict_images(tmp_path / "model.pt", folder, tmp_path / "p.csv", sex=True, progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    for row in rows:
        assert row["lower"] <= row["boneage_months"] <= row["upper"]
        assert row["upper"] - row["lower"] >= 2 * 2.0 * 5.0 - 0.2  # k·(s + s0) on each side
