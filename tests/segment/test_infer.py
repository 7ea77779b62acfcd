"""Inference honours the model file's settings, refuses gapped strides, and runs on float64 input."""
import numpy as np
import pytest

from handprep.segment.film import film_box
from handprep.segment.files import model_settings
from handprep.segment.infer import Segmenter, postprocess, to_full_size
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
                                  "normalisation": segmenter.meta["normalisation"], "input_crop": "film_box",
                                  "postprocess": "largest_region"}
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


def test_a_film_on_black_padding_is_cropped_before_scaling_and_mapped_back(phantom_model, segmenter, monkeypatch):
    film = phantom(seed=5, height=240, width=180).image
    canvas = np.zeros((600, 500), film.dtype)
    canvas[200:440, 250:430] = np.maximum(film, 20)  # an exposed film (never black) on a black canvas
    x0, y0, x1, y1 = box = film_box(canvas, margin_px=8)
    # the film plus its 8 px margin, and at most the 2 px blur's reach (4 px) more
    assert 238 <= x0 <= 242 and 188 <= y0 <= 192 and 438 <= x1 <= 442 and 448 <= y1 <= 452
    seen = {}

    def spy(images, predict, tile, stride, batch_size, window):
        seen["shape"] = images[0].shape
        return [np.ones(i.shape, np.float32) for i in images]

    monkeypatch.setattr("handprep.segment.infer.sliding_window_many", spy)
    prob = segmenter.probability(canvas)
    assert seen["shape"] == (128, round(128 * (x1 - x0) / (y1 - y0)))  # the film box at 128 px, not the canvas
    assert prob.shape == canvas.shape
    assert prob[y0:y1, x0:x1].min() == 1 and prob.sum() == (x1 - x0) * (y1 - y0)  # 0 outside the box
    assert box != (0, 0, 500, 600)


def test_without_padding_the_whole_image_is_seen():
    image = np.full((50, 80), 90, np.uint8)
    assert film_box(image) == (0, 0, 80, 50)
    assert np.array_equal(to_full_size(np.ones((5, 8), np.float32), (50, 80), (0, 0, 80, 50)), np.ones((50, 80)))


def test_post_processing_named_by_the_model_file():
    mask = np.zeros((100, 100), np.uint8)
    mask[20:90, 30:70] = 255  # the hand, with a hole
    mask[50:55, 45:50] = 0
    mask[0:100, 0:6] = 255  # a frame strip along the left edge: 600 px, 21 % of the hand
    largest = postprocess(mask, "largest_region")
    assert largest[:, :6].max() == 0 and largest[50:55, 45:50].min() == 255
    kept = postprocess(mask, "fill_5pct")
    assert kept[:, :6].min() == 255 and kept[50:55, 45:50].min() == 255


def test_files_without_crop_or_post_processing_keep_their_old_behaviour_and_unknown_ones_are_refused():
    meta = {"tile_px": 128, "work_size_px": 384}
    settings = model_settings(meta)
    assert (settings["input_crop"], settings["postprocess"]) == ("none", "fill_5pct")
    with pytest.raises(ModelFileError, match="input crop 'hand_box'"):
        model_settings({**meta, "input_crop": "hand_box"})
    with pytest.raises(ModelFileError, match="post-processing 'convex_hull'"):
        model_settings({**meta, "postprocess": "convex_hull"})


def test_clahe_normalisation_is_applied_only_for_models_trained_with_it(phantom_model, monkeypatch, tmp_path):
    from handprep.segment.files import NORMALISATIONS
    from handprep.segment.infer import local_contrast

    rng = np.random.default_rng(0)
    flat = np.full((384, 384), 0.45, np.float32)
    flat[96:288, 96:288] = 0.5  # a faint square on a grey film, with film grain
    flat = np.clip(flat + rng.normal(0, 0.01, flat.shape).astype(np.float32), 0, 1)
    assert local_contrast(flat, NORMALISATIONS["percentile"]) is flat
    boosted = local_contrast(flat, NORMALISATIONS["percentile+clahe"])
    assert boosted.dtype == np.float32 and 0 <= boosted.min() and boosted.max() <= 1
    edge = lambda im: im[100:108, 116:268].mean() - im[84:92, 116:268].mean()  # noqa: E731  inside − outside
    assert edge(boosted) > 1.4 * edge(flat)  # measured 1.64: the faint edge is steeper
    net, meta = load_model(phantom_model.model_path)
    save_model(tmp_path / "c.pt", net, {**meta, "normalisation": NORMALISATIONS["percentile+clahe"]})
    plain, clahe = Segmenter(phantom_model.model_path, device="cpu"), Segmenter(tmp_path / "c.pt", device="cpu")
    image = phantom(seed=4, height=200, width=160).image
    assert np.array_equal(clahe.work_image(image), local_contrast(plain.work_image(image), clahe.settings["normalisation"]))
