"""IResNet / MobileFaceNet layouts, sizes and arcface_torch checkpoint compatibility."""

from __future__ import annotations

import pickle

import pytest
import torch

from btnet.io.model_store import load_arcface_backbone
from btnet.models import build_backbone
from btnet.models.iresnet import IRESNET_LAYERS

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_iresnet_keys(layers: tuple[int, ...]) -> set[str]:
    """The arcface_torch key set, written out from its documented module names."""
    keys = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"}
    keys |= {f"bn1.{k}" for k in BN} | {f"bn2.{k}" for k in BN} | {f"features.{k}" for k in BN}
    for i, blocks in enumerate(layers, start=1):
        for j in range(blocks):
            p = f"layer{i}.{j}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight", f"{p}.prelu.weight"}
            for bn in ("bn1", "bn2", "bn3"):
                keys |= {f"{p}.{bn}.{k}" for k in BN}
            if j == 0:
                keys.add(f"{p}.downsample.0.weight")
                keys |= {f"{p}.downsample.1.{k}" for k in BN}
    return keys


@pytest.mark.parametrize("arch", ["iresnet18", "iresnet34", "iresnet50", "iresnet100"])
def test_iresnet_key_layout(arch):
    model = build_backbone(arch, width=8, embedding_size=16)
    assert set(model.state_dict()) == expected_iresnet_keys(IRESNET_LAYERS[arch])


def test_iresnet50_reference_size_and_shapes():
    model = build_backbone("iresnet50")
    assert sum(p.numel() for p in model.parameters()) == 43_590_848  # the paper's 43.59M
    assert model.fc.weight.shape == (512, 512 * 7 * 7)
    assert not model.features.weight.requires_grad  # fixed scale, as arcface_torch


@pytest.mark.parametrize(
    ("size", "expected"), [(112, [112, 56, 28, 14, 7]), (56, [56, 28, 14, 7, 4]), (64, [64, 32, 16, 8, 4])]
)
def test_unit_sizes_follow_canonical_size(size, expected):
    model = build_backbone("iresnet18", input_size=size, width=8, embedding_size=16)
    sizes = model.unit_output_sizes()
    assert sorted(set(sizes), reverse=True) == expected
    assert model(torch.randn(2, 3, size, size)).shape == (2, 16)


def test_feature_pyramid_matches_forward():
    model = build_backbone("iresnet18", input_size=56, width=8, embedding_size=16).eval()
    x = torch.randn(2, 3, 56, 56)
    emb, units = model(x, return_units=True)
    assert len(units) == len(model.unit_names) == 9
    assert torch.equal(emb, model(x))
    assert torch.equal(units[3], model.forward_units(x, 0, 4))
    assert torch.equal(emb, model(units[3], start=4))


def test_arcface_checkpoint_loads_strict_and_reproduces(tmp_path):
    src = build_backbone("iresnet18", embedding_size=64).train()
    src(torch.randn(4, 3, 112, 112))  # non-trivial BN statistics
    src.eval()
    path = tmp_path / "backbone.pth"
    torch.save(src.state_dict(), path)
    loaded = load_arcface_backbone(path, "r18", embedding_size=64)
    x = torch.randn(2, 3, 112, 112)
    assert torch.equal(loaded(x), src(x))


def test_arcface_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('pwned')" % (tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"conv1.weight": Evil()}, fh)
    with pytest.raises(ValueError, match="weights-only"):
        load_arcface_backbone(path, "iresnet18")
    assert not (tmp_path / "pwned").exists()


def test_wrong_checkpoint_architecture_is_clear(tmp_path):
    torch.save(build_backbone("iresnet18", width=8).state_dict(), tmp_path / "b.pth")
    with pytest.raises(ValueError, match="does not fit"):
        load_arcface_backbone(tmp_path / "b.pth", "iresnet34")


def test_mobilefacenet_layout_and_sizes():
    model = build_backbone("mbf")
    keys = set(model.state_dict())
    for key in (
        "layers.0.layers.0.weight",
        "layers.1.layers.1.running_mean",
        "layers.2.layers.1.layers.0.weight",
        "layers.3.layers.0.layers.2.layers.1.weight",
        "conv_sep.layers.2.weight",
        "features.layers.0.layers.0.weight",
        "features.layers.2.weight",
        "features.layers.3.running_var",
    ):
        assert key in keys, key
    assert model.features.layers[0].layers[0].kernel_size == (7, 7)
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 512)
    small = build_backbone("mbf", input_size=56, embedding_size=64)
    assert small.features.layers[0].layers[0].kernel_size == (4, 4)
    assert small(torch.randn(2, 3, 56, 56)).shape == (2, 64)


def test_unknown_arch_and_kwargs_are_clear():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_backbone("resnet9000")
    with pytest.raises(ValueError, match="does not take"):
        build_backbone("mbf", width=3)
