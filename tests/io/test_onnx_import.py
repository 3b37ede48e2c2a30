"""ONNX import of IResNets exported the arcface_torch way, checked against real onnxruntime."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnxhelpers import (
    assert_same_embeddings,
    insightface_style,
    op_counts,
    ort_constant_fold,
    ort_run,
    random_iresnet,
    torch_run,
    unit,
)

from btnet.deployment.onnx_arcface import export_arcface_onnx
from btnet.io.onnx_import import (
    IDENTITY_VAR,
    OnnxImportError,
    load_onnx_backbone,
    onnx_input,
    restore_batchnorm_statistics,
)
from btnet.models.iresnet import IRESNET_LAYERS, IResNet

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """A random iresnet18 (width 4, 112 px, 16-d) with non-trivial BatchNorms, exported."""
    net = random_iresnet("iresnet18", 4, 112, 16, seed=3)
    path = export_arcface_onnx(net, tmp_path_factory.mktemp("onnx") / "r18.onnx")
    return net, path


def _batch(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)


def test_export_is_the_arcface_torch_graph(r18):
    _, path = r18
    model = onnx.load(str(path))
    (inp,) = model.graph.input
    assert inp.name == "data"
    assert inp.type.tensor_type.shape.dim[0].dim_param == "None"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 112, 112]
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {11}
    # eval export folds every BN that follows a conv; the others stay
    counts = op_counts(path)
    blocks = sum(IRESNET_LAYERS["iresnet18"])
    assert counts["Conv"] == 1 + 2 * blocks + 4
    assert counts["BatchNormalization"] == blocks + 2


def test_import_reproduces_onnxruntime_with_dynamic_batch(r18):
    net, path = r18
    backbone, info = load_onnx_backbone(path)
    assert isinstance(backbone, IResNet) and not backbone.training
    x = _batch(3, 112)  # batch 3 through a graph traced at batch 1
    ref = ort_run(path, x)
    assert ref.shape == (3, 16)
    assert_same_embeddings(ref, torch_run(backbone, x))
    assert_same_embeddings(torch_run(net, x), torch_run(backbone, x))
    blocks = sum(IRESNET_LAYERS["iresnet18"])
    assert info["arch"] == "iresnet18" and info["layers"] == [2, 2, 2, 2]
    assert (info["width"], info["embedding_size"], info["input_size"]) == (4, 16, 112)
    assert info["batch"] == "dynamic" and info["input_name"] == "data"
    assert info["batchnorms"]["kept"] == blocks + 2
    assert info["batchnorms"]["folded_into_conv"] == 1 + 2 * blocks + 4
    assert info["batchnorms"]["folded_into_fc"] == 0
    conv = info["input_convention"]
    assert conv["in_graph"] is False and conv["source"].startswith("assumed")
    assert (conv["mean"], conv["std"], conv["channels"]) == (127.5, 127.5, "RGB")


def test_folded_batchnorm_becomes_exact_identity_carrying_the_bias(r18):
    net, path = r18
    backbone, _ = load_onnx_backbone(path)
    # the folding, derived here from the original module: W * g / sqrt(v + eps), b - m * g / ...
    for conv, bn in (("conv1", "bn1"), ("layer2.0.conv2", "layer2.0.bn3"),
                     ("layer3.0.downsample.0", "layer3.0.downsample.1")):
        o_bn = net.get_submodule(bn)
        k = o_bn.weight / torch.sqrt(o_bn.running_var + o_bn.eps)
        want_w = net.get_submodule(conv).weight * k.view(-1, 1, 1, 1)
        want_b = o_bn.bias - o_bn.running_mean * k
        got = backbone.get_submodule(bn)
        assert torch.allclose(backbone.get_submodule(conv).weight, want_w, atol=1e-6)
        assert torch.allclose(got.bias, want_b, atol=1e-6)
        assert torch.equal(got.weight, torch.ones_like(got.weight))
        assert torch.equal(got.running_mean, torch.zeros_like(got.running_mean))
        assert torch.equal(got.running_var, torch.full_like(got.running_var, IDENTITY_VAR))
        x = torch.randn(2, got.num_features, 5, 5) * 10
        with torch.no_grad():
            assert torch.equal(got(x), x + got.bias.view(1, -1, 1, 1))  # bit-exact
    # BatchNorms that follow no conv map one to one
    for bn in ("layer1.0.bn1", "layer4.1.bn1", "bn2", "features"):
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(backbone.get_submodule(bn), key),
                               getattr(net.get_submodule(bn), key))
    assert torch.equal(backbone.get_submodule("layer3.1.prelu").weight,
                       net.get_submodule("layer3.1.prelu").weight)


def test_constant_folded_graph_imports_the_same(r18, tmp_path):
    """The onnx-simplifier step of torch2onnx, done by onnxruntime's constant folding."""
    _, path = r18
    folded = tmp_path / "r18_folded.onnx"
    ort_constant_fold(path, folded)
    assert op_counts(path).get("Identity", 0) > 0  # torch shares equal initializers this way
    assert op_counts(folded).get("Identity", 0) == 0  # so the folded graph differs
    backbone, info = load_onnx_backbone(folded)
    x = _batch(2, 112, seed=1)
    assert_same_embeddings(ort_run(folded, x), torch_run(backbone, x))
    assert info["arch"] == "iresnet18"


def test_onnx_simplifier_graph_imports_the_same(tmp_path):
    """torch2onnx.py --simplify: the real onnx-simplifier, where it is installed."""
    pytest.importorskip("onnxsim", reason="onnx-simplifier (onnxsim) is not installed; the "
                        "constant-folded variant above covers the same rewrite")
    net = random_iresnet("iresnet18", 4, 112, 16, seed=3)
    path = export_arcface_onnx(net, tmp_path / "r18_sim.onnx", simplify=True)
    assert op_counts(path).get("Identity", 0) == 0
    backbone, info = load_onnx_backbone(path)
    x = _batch(3, 112, seed=7)
    assert info["batch"] == "dynamic"
    assert_same_embeddings(ort_run(path, x), torch_run(backbone, x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_unfolded_batchnorms_and_conv_biases_map_too(tmp_path):
    """A graph exported without folding (BatchNormalization after each Conv), one conv with a bias."""
    from onnx import numpy_helper

    net = random_iresnet("iresnet18", 2, 32, 8, seed=8)
    path = tmp_path / "unfolded.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), input_names=["data"],
                      opset_version=11, dynamo=False, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE)
    model = onnx.load(str(path))
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    assert len(stem.input) == 2  # no bias: the BatchNorm after it was not folded
    bias = np.random.default_rng(0).uniform(-0.5, 0.5, 2).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(bias, "stem_bias"))
    stem.input.append("stem_bias")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(model, str(path))
    backbone, info = load_onnx_backbone(path)
    blocks = sum(IRESNET_LAYERS["iresnet18"])
    assert info["batchnorms"]["kept"] == 1 + 3 * blocks + 4 + 2
    assert info["batchnorms"]["folded_into_conv"] == 0
    x = _batch(2, 32, seed=9)
    assert_same_embeddings(ort_run(path, x), torch_run(backbone, x))


@pytest.mark.parametrize("arch,width,size,emb", [("iresnet34", 2, 48, 8), ("iresnet50", 3, 32, 12)])
def test_depth_width_and_size_are_read_from_the_graph(tmp_path, arch, width, size, emb):
    net = random_iresnet(arch, width, size, emb, seed=5)
    path = export_arcface_onnx(net, tmp_path / f"{arch}.onnx")
    backbone, info = load_onnx_backbone(path)
    assert (info["arch"], info["width"], info["embedding_size"]) == (arch, width, emb)
    assert info["layers"] == list(IRESNET_LAYERS[arch])
    assert info["input_size"] == size and info["input_size_from"] == "graph input shape"
    assert backbone.input_size == size
    x = _batch(2, size, seed=2)
    assert_same_embeddings(ort_run(path, x), torch_run(backbone, x))

    # a graph whose spatial size is symbolic: the size comes from the head
    model = onnx.load(str(path))
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "side"
    sym = tmp_path / "symbolic.onnx"
    onnx.save(model, str(sym))
    _, info = load_onnx_backbone(sym)
    final = math.ceil(size / 16)
    assert info["input_size"] == 16 * final and info["input_size_from"].startswith("head")
    _, info = load_onnx_backbone(sym, input_size=size)
    assert info["input_size"] == size


def test_insightface_layout_with_in_graph_normalisation(r18, tmp_path):
    """Sub/Mul on 0..255 pixels (mean 127.5, scale 1/128), Reshape, MatMul + Add."""
    _, path = r18
    variant = tmp_path / "insightface.onnx"
    insightface_style(path, variant)
    backbone, info = load_onnx_backbone(variant)
    conv = info["input_convention"]
    assert conv["in_graph"] is True and conv["source"].startswith("graph")
    assert conv["mean"] == [127.5] * 3 and conv["std"] == [128.0] * 3
    assert [s["node"] for s in conv["graph_preprocessing"]] == ["_minus0", "_mul0"]
    pixels = np.random.default_rng(4).integers(0, 256, (2, 3, 112, 112)).astype(np.float32)
    normalised = (pixels - 127.5) / 127.5  # what btnet feeds its models
    assert np.allclose(onnx_input(variant, normalised), pixels, atol=1e-4)
    assert_same_embeddings(ort_run(variant, pixels), torch_run(backbone, normalised))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_refuses_a_graph_that_is_not_an_iresnet(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 4),
    ).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), input_names=["data"],
                      opset_version=11, dynamo=False)
    relu = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Relu")
    with pytest.raises(OnnxImportError, match=r"cannot place node") as err:
        load_onnx_backbone(path)
    assert f"'{relu.name}' (Relu" in str(err.value) and "PReLU" in str(err.value)


def test_refuses_block_counts_of_no_known_depth(tmp_path):
    net = IResNet((2, 2, 2, 3), arch="iresnet18", input_size=32, width=2, embedding_size=4).eval()
    path = export_arcface_onnx(net, tmp_path / "odd.onnx")
    with pytest.raises(OnnxImportError, match=r"\(2, 2, 2, 3\) blocks per stage"):
        load_onnx_backbone(path)


def test_refuses_preprocessing_it_cannot_fold_exactly(r18, tmp_path):
    _, path = r18
    variant = tmp_path / "zero_one.onnx"
    insightface_style(path, variant, mean=0.0, scale=1 / 255)  # pixel 127.5 -> 0.5, not 0
    with pytest.raises(OnnxImportError, match=r"'_mul0' \(Mul.*maps pixel 127.5 to"):
        load_onnx_backbone(variant)


def test_unreadable_file_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        load_onnx_backbone(bad)


@pytest.mark.shared_data
def test_real_faces_match_onnxruntime(r18, shared_data, tmp_path):
    from btnet.data.images import read_image
    from btnet.data.transforms import to_tensor

    _, path = r18
    people = sorted((shared_data / "lfw" / "images").iterdir())[:5]
    images = [read_image(sorted(p.glob("*.jpg"))[0]) for p in people]
    x = to_tensor(images).numpy()
    assert x.shape == (5, 3, 112, 112)
    backbone, _ = load_onnx_backbone(path)
    ref, got = ort_run(path, x), torch_run(backbone, x)
    assert np.abs(unit(ref) - unit(got)).max() <= 1e-4
    assert_same_embeddings(ref, got)
    # the same faces as 0..255 pixels through a graph that normalises inside
    variant = tmp_path / "insightface.onnx"
    insightface_style(path, variant)
    backbone, _ = load_onnx_backbone(variant)
    pixels = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
    assert_same_embeddings(ort_run(variant, pixels), torch_run(backbone, x))


def test_restored_statistics_make_train_mode_batchnorm_behave_like_the_original(tmp_path):
    """A folded BN as identity is exact in eval mode but, trained on batch statistics, it would
    wipe out the folded scale; restore_batchnorm_statistics fixes that without changing eval."""
    import copy

    x = torch.from_numpy(_batch(64, 32, seed=6))
    net = random_iresnet("iresnet18", 4, 32, 8, seed=1)
    for m in net.modules():  # running statistics = the data's own, as in a trained model
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0
    with torch.no_grad():
        net.train()(x)
    net.eval()
    backbone, info = load_onnx_backbone(export_arcface_onnx(net, tmp_path / "t.onnx"))

    def train_vs_eval(model: torch.nn.Module) -> float:
        model = copy.deepcopy(model)
        with torch.no_grad():
            e, t = model.eval()(x), model.train()(x)
        return float(torch.nn.functional.cosine_similarity(t, e).min())

    assert train_vs_eval(net) > 0.999
    assert train_vs_eval(backbone) < 0.9  # identity BNs: train mode is another function
    with torch.no_grad():
        before = backbone(x)
    restored = restore_batchnorm_statistics(backbone, [x[:32], x[32:]])
    assert restored == info["batchnorms"]["identity"]
    with torch.no_grad():
        assert_same_embeddings(before.numpy(), backbone(x).numpy(), tol=1e-5)
    assert train_vs_eval(backbone) > 0.999
    assert restore_batchnorm_statistics(backbone, [x]) == []  # nothing identity is left


def _data_statistics(net: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Running statistics = the batch's own, as in a trained model (BN momentum 1 for a pass)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = 1.0
    with torch.no_grad():
        net.train()(x)
    for m in bns:
        m.momentum = 0.1
    return net.eval()


def test_unit_output_scale_keeps_the_function_and_makes_an_import_train_like_the_original(
        tmp_path):
    """Issue 12's round trip: the exporter discards how each channel's scale is split between
    conv and BatchNorm, which sets how fast copied branches train. In unit scale the original
    and its import are the same parameters (up to each channel's sign), so they train alike."""
    import copy

    from btnet.models.conv_scale import unit_output_scale

    x = torch.from_numpy(_batch(64, 32, seed=7))
    net = _data_statistics(random_iresnet("iresnet18", 4, 32, 8, seed=2), x)
    imported, _ = load_onnx_backbone(export_arcface_onnx(net, tmp_path / "t.onnx"))
    original = copy.deepcopy(net)
    with torch.no_grad():
        ref_eval, ref_train = net.eval()(x), copy.deepcopy(net).train()(x)
    rewritten = unit_output_scale(original, [x[:32], x[32:]])
    assert "features" in rewritten and "layer1.0.bn2" in rewritten
    with torch.no_grad():
        assert_same_embeddings(ref_eval.numpy(), original.eval()(x).numpy(), tol=1e-5)
        assert_same_embeddings(ref_train.numpy(), copy.deepcopy(original).train()(x).numpy(),
                               tol=1e-5)
    # every rescaled conv now has unit output std on those faces
    feats = {}
    hook = original.layer2[0].conv2.register_forward_hook(lambda m, i, o: feats.setdefault("y", o))
    with torch.no_grad():
        original.eval()(x)
    hook.remove()
    std = feats["y"].transpose(0, 1).reshape(feats["y"].shape[1], -1).std(1, unbiased=False)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)

    unit_output_scale(imported, [x[:32], x[32:]])
    # The import's BatchNorm scales are measured (biased std); the original's running variance
    # is unbiased, n / (n - 1) larger: 256 values per channel in layer4 here, so the two
    # differ by ~0.2 % there, and no better can be known from a folded graph.
    with torch.no_grad():
        assert_same_embeddings(ref_eval.numpy(), imported.eval()(x).numpy(), tol=1e-5)
        assert_same_embeddings(ref_train.numpy(), copy.deepcopy(imported).train()(x).numpy(),
                               tol=1e-2)
    a, b = original.state_dict(), imported.state_dict()
    for name in a:
        if name.endswith(".weight") and a[name].dim() == 4:  # conv weights: equal up to sign
            assert torch.allclose(a[name].abs(), b[name].abs(), atol=1e-5), name
    # one SGD step on the same loss moves both to the same function (the branch dynamics)
    for model in (original, imported):
        model.train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1,
                              momentum=0.9, weight_decay=5e-4)
        model(x).pow(2).mean().backward()
        opt.step()
    with torch.no_grad():
        assert_same_embeddings(original.eval()(x).numpy(), imported.eval()(x).numpy(), tol=1e-2)
