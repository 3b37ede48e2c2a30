"""open_trunk: a btnet model folder, an arcface_torch backbone.pth or an ONNX graph as a trunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnxhelpers import assert_same_embeddings, ort_run, random_iresnet, torch_run

from btnet.deployment.onnx_arcface import export_arcface_onnx
from btnet.io.model_store import load_model, save_backbone, save_btnet
from btnet.io.trunks import BTNET_CONVENTION, Trunk, iresnet_config_from_state, open_trunk
from btnet.models import BTNet


def _x(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size))
                            .astype(np.float32))


def _same_module_output(a: torch.nn.Module, b: torch.nn.Module, size: int) -> bool:
    x = _x(2, size)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("arch,width,size", [("iresnet34", 4, 112), ("iresnet18", 2, 48)])
def test_arcface_pth_of_any_depth_and_width(tmp_path, arch, width, size):
    net = random_iresnet(arch, width, size, 8, seed=1)
    pth = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, pth)  # DDP-saved
    trunk = open_trunk(pth)
    assert isinstance(trunk, Trunk) and trunk.kind == "arcface-pth"
    assert trunk.backbone.arch == arch and trunk.backbone.config["width"] == width
    assert (trunk.canonical, trunk.embedding_size) == (size, 8)
    assert trunk.input_convention["source"].startswith("assumed")
    assert trunk.meta["detected"]["arch"] == arch and len(trunk.meta["sha256"]) == 64
    assert _same_module_output(trunk.backbone, net, size)


def test_pth_canonical_size_follows_the_head(tmp_path):
    net = random_iresnet("iresnet18", 2, 48, 8, seed=1)  # 3x3 final map: sizes 33..48 fit
    cfg = iresnet_config_from_state(net.state_dict())
    assert cfg["input_size"] == 48 and cfg["input_size_from"].startswith("head")
    assert iresnet_config_from_state(net.state_dict(), 40)["input_size"] == 40
    with pytest.raises(ValueError, match="3x3"):
        iresnet_config_from_state(net.state_dict(), 64)
    pth = tmp_path / "b.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), pth)
    with pytest.raises(ValueError, match="not an IResNet state dict"):
        open_trunk(pth)


def test_model_folders_backbone_and_btnet(tmp_path):
    net = random_iresnet("iresnet18", 2, 32, 8, seed=2)
    classifier = {"weight": torch.randn(5, 8)}
    save_backbone(net, tmp_path / "hr" / "model", meta={"name": "hr", "train_set": "x"},
                  classifier=classifier)
    trunk = open_trunk(tmp_path / "hr")  # a training output folder holding model/
    assert trunk.kind == "model" and trunk.meta["name"] == "hr"
    assert trunk.input_convention == {**BTNET_CONVENTION, "source": "btnet model"}
    assert torch.equal(trunk.classifier["weight"], classifier["weight"])
    assert _same_module_output(trunk.backbone, net, 32)

    save_btnet(BTNet(net, (8,)), tmp_path / "bt")
    trunk = open_trunk(tmp_path / "bt")
    assert trunk.meta["model_kind"] == "btnet" and trunk.canonical == 32
    assert _same_module_output(trunk.backbone, net, 32)


def test_onnx_trunk_round_trip_keeps_its_provenance(tmp_path):
    """btnet IResNet -> arcface_torch ONNX -> trunk -> stored model -> trunk again."""
    net = random_iresnet("iresnet18", 2, 32, 8, seed=3)
    path = export_arcface_onnx(net, tmp_path / "r18.onnx")
    trunk = open_trunk(path)
    assert trunk.kind == "onnx" and trunk.meta["arch"] == "iresnet18"
    assert trunk.input_convention["source"].startswith("assumed")
    x = _x(3, 32, seed=5).numpy()
    assert_same_embeddings(ort_run(path, x), torch_run(trunk.backbone, x))
    assert_same_embeddings(torch_run(net, x), torch_run(trunk.backbone, x))
    assert "onnx trunk r18.onnx: iresnet18 width 2" in trunk.describe()
    assert trunk.meta["verified_vs_onnxruntime"]["max_abs_diff_normalised"] <= 1e-4

    assert trunk.restore_batchnorm_statistics([torch.from_numpy(x)], described_as="3 noise")
    assert trunk.meta["batchnorm_statistics"] == {"restored": 21, "from": "3 noise"}
    folder = trunk.save(tmp_path / "imported")
    stored = load_model(folder)
    source = stored.meta["trunk_source"]
    assert source["kind"] == "onnx" and source["input_convention"] == trunk.input_convention
    assert source["sha256"] == trunk.meta["sha256"]
    assert source["batchnorm_statistics"]["restored"] == 21
    again = open_trunk(folder)
    assert again.input_convention == trunk.input_convention  # recorded, never re-guessed
    assert _same_module_output(again.backbone, trunk.backbone, 32)


def test_imported_trunk_takes_branches(tmp_path):
    """Identity BatchNorms are real BatchNorms, so branch paths copy them per resolution."""
    net = random_iresnet("iresnet18", 2, 32, 8, seed=4)
    trunk = open_trunk(export_arcface_onnx(net, tmp_path / "t.onnx"))
    model = BTNet(trunk.backbone, (8,)).eval()
    owned = [name for name, _ in model.branch_path(8).owned_modules()]
    assert any(name.endswith("bn3") for name in owned)  # a folded (identity) BatchNorm, copied
    with torch.no_grad():
        assert model(_x(2, 8)).shape == (2, 8)
        assert torch.allclose(model(_x(2, 32)), net(_x(2, 32)), atol=1e-4)


def test_onnx_trunk_that_disagrees_with_onnxruntime_is_refused(tmp_path, monkeypatch):
    import btnet.io.onnx_import as onnx_import

    path = export_arcface_onnx(random_iresnet("iresnet18", 2, 32, 8, seed=3), tmp_path / "t.onnx")
    real = onnx_import.load_onnx_backbone

    def mismapped(*args, **kwargs):  # stands in for a graph feature the walk does not model
        backbone, info = real(*args, **kwargs)
        with torch.no_grad():
            backbone.layer2[0].prelu.weight.mul_(-3.0)
        return backbone, info

    monkeypatch.setattr(onnx_import, "load_onnx_backbone", mismapped)
    with pytest.raises(onnx_import.OnnxImportError, match="differs from onnxruntime"):
        open_trunk(path)
    assert open_trunk(path, verify=False).kind == "onnx"


def test_unknown_sources_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_trunk(tmp_path / "nothing.onnx")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="model folder.*backbone.*ONNX"):
        open_trunk(txt)
    with pytest.raises(FileNotFoundError, match="model.json"):
        open_trunk(tmp_path)
