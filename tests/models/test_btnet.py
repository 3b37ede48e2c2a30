"""The Branch-to-Trunk construction: coupling, strides, per-resolution BN, storage, routing."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from btnet.io.model_store import load_model, save_btnet
from btnet.models import BranchPath, BranchSelector, BTNet, all_strategies, build_backbone
from btnet.models.cost import cost_report


def tiny(arch="iresnet18", size=56, **kw):
    kw.setdefault("embedding_size", 16)
    if arch.startswith("iresnet"):
        kw.setdefault("width", 8)
    return build_backbone(arch, input_size=size, **kw)


@pytest.mark.parametrize(("arch", "size", "width"), [("iresnet18", 56, 8), ("iresnet18", 112, 4), ("iresnet34", 64, 8)])
def test_coupling_shapes_match_trunk(arch, size, width):
    trunk = tiny(arch, size, width=width).eval()
    model = BTNet(trunk, [])
    for r in trunk.available_resolutions():  # every r some unit outputs, e.g. 4 and 32 too
        model.add_resolution(r)
    model.eval()
    sizes = trunk.unit_output_sizes()
    for r in model.resolutions:
        k = model.coupling[r]
        assert sizes[k] == r and all(s != r for s in sizes[:k]), "first unit with r x r output"
        branch_out = model.path(r).branch(torch.randn(2, 3, r, r))
        teacher = model.trunk_features_at_coupling(torch.randn(2, 3, size, size), r)
        assert branch_out.shape == teacher.shape
        assert model(torch.randn(2, 3, r, r)).shape == (2, 16)


def test_default_couplings_at_112_and_56():
    m112 = BTNet(tiny(size=112, width=4))
    assert {r: m112.coupling_name(r) for r in m112.resolutions} == {
        7: "layer4.0", 14: "layer3.0", 28: "layer2.0"}
    m56 = BTNet(tiny(size=56))
    assert {r: m56.coupling_name(r) for r in m56.resolutions} == {
        7: "layer3.0", 14: "layer2.0", 28: "layer1.0"}


def test_branch_strides_are_one_and_trunk_untouched():
    model = BTNet(tiny())
    for branch in (model.path(r).branch for r in model.resolutions):
        convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(c.stride == (1, 1) for c in convs)
    assert model.trunk.layer1[0].conv2.stride == (2, 2)
    assert model.trunk.layer1[0].downsample[0].stride == (2, 2)


def test_branch_is_a_copy_of_the_trunk_prefix():
    model = BTNet(tiny())
    body = model.path(14).branch.body
    trunk = model.trunk.state_dict()
    for key, value in body.state_dict().items():
        assert torch.equal(value, trunk[key]), key
    assert not hasattr(body, "layer3") and len(body.layer2) == 1
    scratch = BTNet(tiny(), pretrained_branches=False)
    assert not torch.equal(scratch.path(14).branch.body.conv1.weight, scratch.trunk.conv1.weight)


def test_mobilefacenet_trunk_works_too():
    model = BTNet(tiny("mbf", 112), (7, 14, 28)).eval()
    assert model.coupling_name(28) == "layers.2"
    for r in (7, 14, 28, 112):
        assert model(torch.randn(2, 3, r, r)).shape == (2, 16)


def test_unsupported_resolution_and_inputs_are_clear():
    with pytest.raises(ValueError, match="no unit .* outputs 9x9"):
        BTNet(tiny(), (9,))
    model = BTNet(tiny())
    with pytest.raises(ValueError, match="no path for 20x20"):
        model(torch.randn(1, 3, 20, 20))
    with pytest.raises(ValueError, match="square"):
        model(torch.randn(1, 3, 14, 7))


def test_paths_are_modules_that_share_the_trunk():
    torch.manual_seed(0)
    model = BTNet(tiny()).eval()
    assert list(model.paths) == ["r7", "r14", "r28", "r56"] and model.input_sizes == (7, 14, 28, 56)
    assert model.paths["r56"] is model.trunk and model.path(56) is model.trunk
    path = model.paths["r14"]
    assert isinstance(path, BranchPath) and model.coupling_name(14) == "layer2.0"
    assert path.tail.layer3[0].conv1 is model.trunk.layer3[0].conv1  # the trunk's own module
    assert path.tail.fc is model.trunk.fc and path.tail.get_submodule("layer2.1.prelu") is model.trunk.layer2[1].prelu
    assert path.tail.layer3[0].bn1 is not model.trunk.layer3[0].bn1  # r14's own
    assert not hasattr(path.tail, "layer1") and len(path.tail.layer2) == 1  # starts at layer2.1
    x = torch.randn(2, 3, 14, 14)
    with torch.no_grad():
        assert torch.equal(model(x), path(x)) and torch.equal(path(x), path.tail(path.branch(x)))
    # no trunk copies: the model holds the trunk once, plus what each path stores
    trunk = sum(p.numel() for p in model.trunk.parameters())
    stored = sum(v.numel() for r in model.resolutions for k, v in model.path_state(r).items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert sum(p.numel() for p in model.parameters()) == trunk + stored


def test_train_mode_updates_only_the_running_path_statistics():
    torch.manual_seed(0)
    model = BTNet(tiny())
    model.freeze_shared()
    trunk = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    other = {k: v.clone() for k, v in model.path_state(7).items()}
    mine = {k: v.clone() for k, v in model.path_state(14).items()}
    model.train()
    model(torch.randn(4, 3, 14, 14))
    assert all(torch.equal(v, trunk[k]) for k, v in model.trunk.state_dict().items())
    assert all(torch.equal(v, other[k]) for k, v in model.path_state(7).items())
    moved = [k for k, v in model.path_state(14).items() if not torch.equal(v, mine[k])]
    assert moved and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in moved)
    assert {k for k in moved if k.startswith("shared.")}, "r14's own tail BatchNorms moved"
    assert model.path_parameters(14) and not any(
        id(p) in {id(q) for q in model.trunk.parameters()} for p in model.path_parameters(14))


def test_untie_keeps_the_numbers_and_owns_every_module():
    torch.manual_seed(0)
    model = BTNet(tiny())
    model.train()
    model(torch.randn(4, 3, 7, 7))  # r7's BatchNorms now differ from the trunk's
    model.eval()
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        before = model(x)
        model.untie(7)
        assert torch.equal(model(x), before)
    tail = model.path(7).tail
    assert tail.layer4[0].conv1 is not model.trunk.layer4[0].conv1 and 7 in model.untied
    trunk_ids = {id(p) for p in model.trunk.parameters()}
    assert not any(id(p) in trunk_ids for p in model.path(7).parameters())


def _outputs(model, inputs):
    model.eval()
    with torch.no_grad():
        return {r: model(x).clone() for r, x in inputs.items()}


@pytest.mark.parametrize("trained", [7, 14, 28])
def test_training_one_path_leaves_other_paths_unchanged(trained):
    torch.manual_seed(0)
    model = BTNet(tiny())
    model.freeze_shared()
    inputs = {r: torch.randn(4, 3, r, r) for r in model.input_sizes}
    before = _outputs(model, inputs)
    opt = torch.optim.SGD(model.path_parameters(trained), lr=0.5)
    model.train()
    for _ in range(2):
        loss = model(torch.randn(8, 3, trained, trained)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _outputs(model, inputs)
    for r in model.input_sizes:
        if r == trained:
            assert not torch.allclose(after[r], before[r]), "the trained path must change"
        else:
            assert torch.equal(after[r], before[r]), f"path {r} changed"


def test_untied_path_owns_its_tail():
    torch.manual_seed(0)
    model = BTNet(tiny())
    model.untie(14)
    inputs = {r: torch.randn(3, 3, r, r) for r in model.input_sizes}
    before = _outputs(model, inputs)
    opt = torch.optim.SGD(model.path_parameters(14), lr=0.5)
    model.train()
    model(torch.randn(8, 3, 14, 14)).pow(2).mean().backward()
    opt.step()
    after = _outputs(model, inputs)
    assert not torch.allclose(after[14], before[14])
    for r in (7, 28, 56):
        assert torch.equal(after[r], before[r])
    assert any(k.startswith("shared.layer4.1.conv2") for k in model.path_state(14))


def test_store_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(1)
    model = BTNet(tiny())
    model.untie(7)
    model.train()
    for r in model.input_sizes:
        model(torch.randn(4, 3, r, r))
    model.eval()
    save_btnet(model, tmp_path / "m", meta={"name": "tiny"})
    stored = load_model(tmp_path / "m")
    assert stored.kind == "btnet" and stored.meta["name"] == "tiny"
    for r in model.input_sizes:
        x = torch.randn(3, 3, r, r)
        assert torch.equal(stored.model(x), model(x))
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["paths"]["14"]["coupling_name"] == "layer2.0"
    assert info["paths"]["7"]["untied"] and not info["paths"]["28"]["untied"]
    # only the branch and its own layers are stored per path
    size28 = (tmp_path / "m" / "path_r28.safetensors").stat().st_size
    assert size28 < (tmp_path / "m" / "trunk.safetensors").stat().st_size / 5


def test_store_rejects_corrupt_files(tmp_path):
    save_btnet(BTNet(tiny()), tmp_path / "m")
    (tmp_path / "m" / "path_r14.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not a stored btnet model"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("indicator", "allocation", "size", "path"),
    [
        ("min", "floor", (20, 24), 14),
        ("min", "near", (20, 24), 14),
        ("min", "ceil", (20, 24), 28),
        ("max", "floor", (20, 24), 14),
        ("max", "near", (20, 24), 28),
        ("avg", "near", (20, 24), 28),
        ("avg", "floor", (5, 6), 7),
        ("min", "ceil", (300, 200), 112),
        ("min", "floor", (14, 14), 14),
        ("min", "ceil", (14, 14), 14),
        ("min", "near", (10, 12), 7),
        ("min", "near", (11, 12), 14),
    ],
)
def test_selection_strategies(indicator, allocation, size, path):
    selector = BranchSelector.from_rule((7, 14, 28, 112), indicator, allocation)
    assert selector.select(*size) == path


def test_selector_thresholds_are_visible_and_configurable():
    sel = BranchSelector.from_rule((7, 14, 28, 112), "min", "near")
    assert sel.thresholds == (10.5, 21.0, 70.0)
    assert sel.describe()[2] == "min(W,H) in [21, 70) -> 28"
    custom = BranchSelector((7, 14, 28, 112), (9, 18, 40), "max")
    assert custom.select(30, 41) == 112 and custom.select(30, 39) == 28
    assert BranchSelector.from_dict(custom.to_dict()) == custom
    assert len(all_strategies((7, 14, 28, 112))) == 9
    with pytest.raises(ValueError):
        BranchSelector((7, 14), (10, 20))


def test_cost_matches_the_paper_for_iresnet50():
    report = cost_report(BTNet(build_backbone("iresnet50")))
    assert report.trunk_params == 43_590_848
    assert abs(report.trunk_macs / 1e9 - 6.31) < 0.005
    by_r = {p.resolution: p for p in report.paths}
    assert abs(100 * by_r[28].branch_params / report.trunk_params - 1.1) < 0.1
    assert abs(by_r[14].branch_params / 1e6 - 2.3) < 0.05
    assert abs(100 * by_r[7].branch_params / report.trunk_params - 48.9) < 0.1
    assert by_r[7].btnet_macs < by_r[14].btnet_macs < by_r[28].btnet_macs < report.trunk_macs
    assert "| 14 | layer3.0 |" in report.to_table()


def test_coupling_can_move_deeper_and_is_stored(tmp_path):
    trunk = tiny("iresnet34", 56)  # layer2 has 4 units with 14x14 outputs
    default = BTNet(trunk, (14,))
    assert [trunk.unit_names[i] for i in trunk.coupling_candidates(14)] == [
        "layer2.0", "layer2.1", "layer2.2", "layer2.3"]
    deep = BTNet(trunk, (14,), couplings={14: trunk.coupling_candidates(14)[2]}).eval()
    assert deep.coupling_name(14) == "layer2.2"
    assert sum(p.numel() for p in deep.path(14).branch.parameters()) > sum(
        p.numel() for p in default.path(14).branch.parameters())
    with pytest.raises(ValueError, match="does not output 14x14"):
        BTNet(trunk, (14,), couplings={14: 0})
    save_btnet(deep, tmp_path / "deep")
    loaded = load_model(tmp_path / "deep").model
    assert loaded.coupling_name(14) == "layer2.2"
    x = torch.randn(2, 3, 14, 14)
    assert torch.equal(loaded(x), deep(x))


def test_trunk_targets_in_one_pass_equal_the_separate_passes():
    """Branch training's teacher (coupling features per r and the embedding) comes from one
    trunk pass; it must be what the separate passes give, bit for bit."""
    trunk = tiny().eval()
    for p in trunk.modules():  # non-trivial statistics
        if isinstance(p, nn.BatchNorm2d):
            p.running_mean.uniform_(-0.5, 0.5)
            p.running_var.uniform_(0.5, 2.0)
    model = BTNet(trunk, [7, 14, 28]).eval()
    x = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        feats, emb = model.trunk_targets(x, [28, 7, 14], embedding=True)
        assert set(feats) == {7, 14, 28}
        for r in (7, 14, 28):
            assert torch.equal(feats[r], model.trunk_features_at_coupling(x, r))
        assert torch.equal(emb, trunk(x))
        only_emb = model.trunk_targets(x, [7], features=False, embedding=True)
        assert only_emb[0] == {} and torch.equal(only_emb[1], emb)
        assert model.trunk_targets(x, [14])[1] is None
