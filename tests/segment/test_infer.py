"""Inference honours the model file's settings, refuses gapped strides, and runs on float64 input."""
import numpy as np
import pytest

from handprep.segment.infer import Segmenter
from handprep.segment.model import ModelFileError, load_model, save_model
from handprep.segment.tiling import sliding_window, sliding_window_many, tile_starts
from handprep.synth import phantom


def test_stride_larger_than_tile_is_refused():
    with pytest.raises(ValueError, match="stride_px 200 is larger than the 128 px tile"):
        tile_starts(400, 128, 200)
    with pytest.raises(ValueError, match="never be predicted"):
        sliding_window(np.zeros((300, 300), np.float32), lambda b: b, tile=128, stride=200)


def test_tiles_of_several_images_in_one_batch_match_one_at_a_time():
    rng = np.random.default_rng(1)
    images = [rng.random(shape, dtype=np.float32) for shape in [(130, 200), (70, 90), (256, 129)]]
    predict = lambda batch: np.sqrt(batch) * 0.5  # noqa: E731
    together = sliding_window_many(images, predict, tile=64, stride=48, batch_size=7, window="gaussian")
    for image, out in zip(images, together):
        assert np.allclose(out, sliding_window(image, predict, tile=64, stride=48, batch_size=3, window="gaussian"))


@pytest.fixture(scope="module")
def segmenter(phantom_model):
    return Segmenter(phantom_model.model_path, device="cpu")


def test_settings_come_from_the_model_file(phantom_model, segmenter, tmp_path, monkeypatch):
    assert segmenter.settings == {"tile_px": 64, "work_size_px": 128, "stride_px": 48, "threshold": 0.5,
                                  "normalisation": segmenter.meta["normalisation"]}
    net, meta = load_model(phantom_model.model_path)
    save_model(tmp_path / "m.pt", net, {**meta, "infer_stride_px": 20, "work_size_px": 96, "threshold": 0.7})
    other = Segmenter(tmp_path / "m.pt", device="cpu")
    seen = {}

    def spy(images, predict, tile, stride, batch_size, window):
        seen.update(tile=tile, stride=stride, shape=images[0].shape)
        return [np.zeros(i.shape, np.float32) for i in images]

    monkeypatch.setattr("handprep.segment.infer.sliding_window_many", spy)
    image = phantom(seed=3, height=260, width=200).image
    other.mask(image)
    assert seen == {"tile": 64, "stride": 20, "shape": (96, 74)}  # long side 260 → 96
    assert other.threshold() == 0.7
    with pytest.raises(ValueError, match="larger than the 64 px tile"):
        other.mask(image, stride_px=100)


def test_unknown_normalisation_or_gapped_stride_in_the_file_is_refused(phantom_model, tmp_path):
    net, meta = load_model(phantom_model.model_path)
    save_model(tmp_path / "n.pt", net, {**meta, "normalisation": "z-score over the dataset"})
    with pytest.raises(ModelFileError, match="z-score over the dataset.*does not implement"):
        Segmenter(tmp_path / "n.pt", device="cpu")
    save_model(tmp_path / "s.pt", net, {**meta, "infer_stride_px": 80})
    with pytest.raises(ValueError, match="larger than the 64 px tile"):
        Segmenter(tmp_path / "s.pt", device="cpu")


def test_float64_input_is_cast_to_float32(segmenter):
    """numpy 2 promotes float32 × float64 scalars to float64; the model must still get float32."""
    image = phantom(seed=4, height=260, width=200, border=False, marker=False).image
    work = segmenter.work_image(image)
    as64 = work.astype(np.float64)
    prob = segmenter.work_probability(as64)
    assert prob.dtype == np.float32
    assert np.allclose(prob, segmenter.work_probability(work), atol=1e-6)
    assert segmenter._predict_batch(np.zeros((2, 64, 64), np.float64)).dtype == np.float32


def test_training_patches_are_float32_even_from_float64_images():
    from handprep.segment.train import Pair, TrainConfig, _epoch_patches

    mask = np.zeros((100, 80), np.float64)
    mask[20:90, 20:60] = 1
    pair = Pair("a", "a.png", "a_mask.png", (0.2 + 0.6 * mask).astype(np.float64), mask, "0" * 64)
    config = TrainConfig(images="x", masks="y", out="z", tile_px=64, stride_px=32)
    for augment in (True, False):
        patches, targets = _epoch_patches([pair], TrainConfig(**{**config.__dict__, "augment": augment}), epoch=0)
        assert patches.dtype == np.float32 and targets.dtype == np.float32
