"""Labels, dataset checks, splits and the weighted-augmentation plan."""
import json

import numpy as np
import pytest

from handprep.boneage import data as bdata
from handprep.pipeline.cache import file_sha256


def _labels(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_bad_label_rows_are_all_named(tmp_path):
    path = _labels(tmp_path, "id,boneage,male\n1,120,True\n2,abc,False\n3,,True\n4,100,maybe\n5,400,M\n1,90,F\n")
    with pytest.raises(bdata.BoneAgeDataError) as err:
        bdata.read_label_table(path)
    message = str(err.value)
    assert "5 bad row(s)" in message
    for fragment in ("line 3: id 2: boneage 'abc'", "line 4: id 3: boneage is empty", "line 5: id 4: male 'maybe'",
                     "line 6: id 5: boneage 400 is outside", "line 7: id 1 appears twice"):
        assert fragment in message


def test_missing_columns_and_split_values(tmp_path):
    with pytest.raises(bdata.BoneAgeDataError, match="missing column.*male"):
        bdata.read_label_table(_labels(tmp_path, "id,boneage\n1,2\n"))
    with pytest.raises(bdata.BoneAgeDataError, match="split 'dev'"):
        bdata.read_label_table(_labels(tmp_path, "id,boneage,male,split\n1,20,1,dev\n"))
    table = bdata.read_label_table(_labels(tmp_path, "Case ID,Bone Age (months),Sex\na,12.5,M\nb,30,0\n"))
    assert table == {"a": bdata.LabelRow(12.5, True), "b": bdata.LabelRow(30.0, False)}


def _fake_dataset(tmp_path, n=5, rows_in_index=None, shape=(8, 8)):
    folder = tmp_path / "run" / "dataset"
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", np.zeros((n, *shape), np.uint8))
    k = n if rows_in_index is None else rows_in_index
    folder.joinpath("index.csv").write_text("index,id\n" + "".join(f"{i},c{i}\n" for i in range(k)))
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
             for name in ("images.npy", "index.csv")}
    folder.joinpath("meta.json").write_text(json.dumps({"packed": k, "shape": list(shape), "files": files}))
    return tmp_path / "run"


def test_a_pack_that_differs_from_its_record_is_refused(tmp_path):
    run = _fake_dataset(tmp_path)
    array = run / "dataset" / "images.npy"
    array.write_bytes(array.read_bytes()[:-8])  # truncated after the run packed it
    with pytest.raises(bdata.BoneAgeDataError, match="truncated or replaced"):
        bdata.open_dataset(run)


def test_dataset_whose_array_does_not_match_its_index_is_refused(tmp_path):
    with pytest.raises(bdata.BoneAgeDataError, match="images.npy has 5 rows but index.csv has 4"):
        bdata.open_dataset(_fake_dataset(tmp_path, 5, rows_in_index=4))
    with pytest.raises(bdata.BoneAgeDataError, match="no packed dataset"):
        bdata.open_dataset(tmp_path / "nowhere")


def test_unlabelled_images_are_named_unless_dropped(tmp_path):
    dataset = bdata.open_dataset(_fake_dataset(tmp_path))
    assert dataset.pipeline is None and dataset.size_px == 8
    labels = {"c0": bdata.LabelRow(10, True), "c2": bdata.LabelRow(30, False), "zz": bdata.LabelRow(1, True)}
    with pytest.raises(bdata.BoneAgeDataError, match="3 image.*no label row: c1; c3; c4.*--drop-unlabelled"):
        bdata.join_labels(dataset, labels)
    joined = bdata.join_labels(dataset, labels, drop_unlabelled=True)
    assert joined.ids == ["c0", "c2"] and joined.rows.tolist() == [0, 2]
    assert joined.ages.tolist() == [10, 30] and joined.male.tolist() == [1, 0]
    assert any("zz" in note for note in joined.notes)
    with pytest.raises(bdata.BoneAgeDataError, match="none of its ids match"):
        bdata.join_labels(dataset, {"x": bdata.LabelRow(1, True)})


def test_stratified_split_is_seeded_exact_and_covers_every_age():
    ids = [f"i{k}" for k in range(100)]
    ages = np.arange(100, dtype=float) * 2
    split = bdata.stratified_split(ids, ages, (0.7, 0.15, 0.15), seed=4)
    assert split == bdata.stratified_split(ids, ages, (0.7, 0.15, 0.15), seed=4)
    assert split != bdata.stratified_split(ids, ages, (0.7, 0.15, 0.15), seed=5)
    counts = {s: sum(v == s for v in split.values()) for s in bdata.SPLITS}
    assert counts == {"train": 70, "val": 15, "test": 15}
    for decile in range(10):  # every age decile has training and held-out images
        part = [split[f"i{k}"] for k in range(decile * 10, decile * 10 + 10)]
        assert part.count("train") == 7 and part.count("val") + part.count("test") == 3


def test_split_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "split.csv"
    bdata.write_split(path, {"a": "train", "b": "test"}, {"a": 10.0, "b": 20.5})
    assert bdata.read_split(path) == {"a": "train", "b": "test"}
    path.write_text("id,split\na,training\n")
    with pytest.raises(bdata.BoneAgeDataError, match="a: 'training'"):
        bdata.read_split(path)


def test_weighted_augmentation_copies_hand_computed():
    # bins [0,10) has 1 image, [10,20) has 3: inverse frequencies 1 and 1/3 → weights 0.75, 0.25
    ages = np.array([5, 12, 15, 18])
    copies, hist = bdata.augmentation_copies(ages, [0, 10, 20], extra_fraction=1.0, max_copies=8)
    # budget 4 copies: bin 0 gets 3 (one image → 3 copies), bin 1 gets 1 over 3 images → round(1/3) = 0
    assert hist["weights"] == [0.75, 0.25]
    assert copies.tolist() == [3, 0, 0, 0]
    assert hist["before"] == [1, 3] and hist["after"] == [4, 3]
    capped, _ = bdata.augmentation_copies(ages, [0, 10, 20], extra_fraction=4.0, max_copies=5)
    assert capped.tolist() == [5, 1, 1, 1]  # 12 · 0.75 = 9 capped at 5; 12 · 0.25 / 3 = 1
