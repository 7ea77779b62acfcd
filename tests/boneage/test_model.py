"""The network's shapes, sex handling, ImageNet loading and model files (weights_only)."""
import pytest
import torch
import torchvision

from handprep.boneage.model import BoneAgeNet, ModelFileError, load_imagenet_backbone, load_model_file, \
    read_model_file, save_model_file


@pytest.mark.parametrize("mode, width", [("scalar", 1), ("onehot", 2), ("embedding", 32)])
def test_shapes_and_sex_changes_the_output(mode, width):
    torch.manual_seed(0)
    net = BoneAgeNet("resnet18", mode, hidden=16, dropout=0.0).eval()
    assert net.sex.width == width
    assert net.head[0].in_features == 512 + width
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        girls, boys = net(x, torch.zeros(3)), net(x, torch.ones(3))
    assert girls.shape == (3,) and boys.shape == (3,)
    assert not torch.allclose(girls, boys)  # sex is an input that matters
    if mode == "onehot":
        assert net.sex(torch.tensor([1.0, 0.0])).tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("backbone, features", [("resnet34", 512), ("resnet50", 2048), ("densenet121", 1024)])
def test_selectable_backbones_take_one_channel(backbone, features):
    net = BoneAgeNet(backbone, "scalar", hidden=8).eval()
    assert net.head[0].in_features == features + 1
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 32, 32), torch.tensor([0.0, 1.0])).shape == (2,)
    with pytest.raises(ValueError, match="valid: resnet18, resnet34"):
        BoneAgeNet("vgg16")


def test_local_imagenet_weights_are_summed_to_one_channel(tmp_path):
    rgb = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(rgb, tmp_path / "resnet18.pth")
    net = BoneAgeNet("resnet18", "scalar", hidden=8)
    loaded = load_imagenet_backbone(net, tmp_path / "resnet18.pth")
    assert loaded == len(rgb) - 2  # all but the ImageNet classifier
    assert torch.equal(net.backbone.conv1.weight, rgb["conv1.weight"].sum(dim=1, keepdim=True))
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="only 0 of"):
        load_imagenet_backbone(net, tmp_path / "other.pth")


def test_model_file_round_trip_with_weights_only(tmp_path):
    net = BoneAgeNet("resnet18", "embedding", hidden=8, dropout=0.1).eval()
    meta = {"arch": {"backbone": "resnet18", "sex_mode": "embedding", "hidden": 8, "dropout": 0.1},
            "norm": {"label_mean": 100.0}, "pipeline": {"stages": [{"resize": {"size_px": 64}}]}}
    save_model_file(tmp_path / "m.pt", net, meta)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == "handprep-boneage" and raw["meta"] == meta
    again, meta_again = load_model_file(tmp_path / "m.pt")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x, torch.tensor([0.0, 1.0])), net.half().float()(x, torch.tensor([0.0, 1.0])))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.pt: not a loadable model file"):
        read_model_file(tmp_path / "bad.pt")
