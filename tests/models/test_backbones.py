"""IResNet / MobileFaceNet layouts, sizes and arcface_torch checkpoint compatibility."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

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


def test_units_in_pieces_and_partial_copies_match_forward():
    model = build_backbone("iresnet18", input_size=56, width=8, embedding_size=16).eval()
    x = torch.randn(2, 3, 56, 56)
    assert len(model.unit_names) == 9
    mid = model.forward_units(x, 0, 4)
    emb = model(x)
    assert torch.equal(emb, model.forward_head(model.forward_units(mid, 4)))
    body = model.truncated_copy(3)  # stem + layer1.0, layer1.1, layer2.0
    assert body.unit_names == ["stem", "layer1.0", "layer1.1", "layer2.0"]
    assert torch.equal(body.forward_units(x), mid)
    tail = model.tail_copy(3, share_weights=True)
    assert tail.unit_names == model.unit_names[4:]
    assert torch.equal(tail(mid), emb)


@pytest.mark.parametrize("arch", ["iresnet18", "mbf"])
def test_shared_tail_shares_weighted_leaves_and_owns_batchnorms(arch):
    kw = {"width": 4} if arch.startswith("iresnet") else {}
    trunk = build_backbone(arch, input_size=56, embedding_size=16, **kw)
    after = 2
    tail = trunk.tail_copy(after, share_weights=True)
    names = trunk.tail_module_names(after)
    shared = owned = 0
    for name, m in tail.named_modules():
        if not name or not any(name == n or name.startswith(n + ".") for n in names):
            continue
        original = trunk.get_submodule(name)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) or next(m.parameters(recurse=False), None) is None:
            assert m is not original, name  # BatchNorms, dropout, containers: the tail's own
            owned += isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
        else:
            assert m is original, name  # conv, PReLU, linear: the trunk's module itself
            shared += 1
    assert shared > 0 and owned > 0
    assert not any(n in tail._modules for n in trunk.unit_specs()[0][1])  # the stem is gone
    untied = trunk.tail_copy(after, share_weights=False)
    trunk_tensors = {id(t) for t in trunk.parameters()}
    assert not any(id(t) in trunk_tensors for t in untied.parameters())


def test_coupling_geometry_lives_on_the_backbone():
    trunk = build_backbone("iresnet34", input_size=56, width=4, embedding_size=8)
    geometry = trunk.coupling_geometry()
    assert geometry.unit_sizes == (56, 28, 28, 28, 14, 14, 14, 14, 7, 7, 7, 7, 7, 7, 4, 4, 4)
    assert trunk.available_resolutions() == [4, 7, 14, 28]
    assert trunk.coupling_candidates(14) == [4, 5, 6, 7] and trunk.coupling_unit(7) == 8
    with pytest.raises(ValueError, match="no unit .* outputs 9x9"):
        trunk.coupling_unit(9)
    with pytest.raises(ValueError, match="does not output 14x14"):
        geometry.check_unit(14, 8)


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
