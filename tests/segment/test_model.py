import pickle

import numpy as np
import pytest
import torch

from handprep.segment.model import (ModelFileError, build_unet, load_model, read_model_file, resolve_model_path,
                                    save_model, DEFAULT_MODEL)


def test_model_file_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_unet("tu-mobilenetv3_small_100", 5, (32, 16, 8, 8, 8)).eval()
    meta = {"encoder": "tu-mobilenetv3_small_100", "encoder_depth": 5, "decoder_channels": [32, 16, 8, 8, 8],
            "tile_px": 64, "work_size_px": 128, "threshold": 0.5, "mask_sha256": {"a": "00"}}
    save_model(tmp_path / "m.pt", model, meta)
    loaded, loaded_meta = load_model(tmp_path / "m.pt")
    assert loaded_meta == meta
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    assert torch.allclose(a, b, atol=2e-2)  # weights stored as float16
    n_params = sum(p.numel() for p in model.state_dict().values())
    assert (tmp_path / "m.pt").stat().st_size < n_params * 2 + 200_000  # 2 bytes per weight


def test_missing_and_bad_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        read_model_file(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a loadable model file"):
        read_model_file(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="not a handprep segmenter"):
        read_model_file(tmp_path / "plain.pt")


class Payload:  # anything with a __reduce__ could run code when unpickled
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"format": "handprep-segmenter", "meta": Payload()}, handle)
    with pytest.raises(ModelFileError, match="not a loadable model file"):
        read_model_file(tmp_path / "evil.pt")


def test_default_model_is_shipped_small_and_loads():
    assert resolve_model_path("default") == DEFAULT_MODEL
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 10_000_000
    _, meta = load_model(DEFAULT_MODEL)
    assert meta["tile_px"] == 256 and meta["infer_stride_px"] == 192
    assert meta["metrics"]["val_full_resolution"]["dice"]["mean"] >= 0.98
    assert len(meta["mask_sha256"]) >= 48


def test_local_imagenet_style_weights_load_offline(tmp_path):
    """A timm-style RGB state dict (as saved from an ImageNet model) initialises the 1-channel encoder."""
    import timm

    source = timm.create_model("mobilenetv3_small_100", pretrained=False, features_only=True)
    torch.save(source.state_dict(), tmp_path / "enc.pt")
    model = build_unet("tu-mobilenetv3_small_100", 5, (32, 16, 8, 8, 8), encoder_weights=str(tmp_path / "enc.pt"))
    first = model.encoder.model.conv_stem.weight
    np.testing.assert_allclose(first.detach().numpy(), source.conv_stem.weight.sum(dim=1, keepdim=True).detach().numpy(),
                               rtol=1e-6)
    torch.save({"unrelated": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="encoder tensors match"):
        build_unet("tu-mobilenetv3_small_100", 5, (32, 16, 8, 8, 8), encoder_weights=str(tmp_path / "other.pt"))
