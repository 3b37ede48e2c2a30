"""Helpers of the ONNX import tests: random IResNets with non-trivial BatchNorms, graph edits."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from btnet.models import build_backbone
from btnet.models.iresnet import IResNet


def randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every BatchNorm gets random statistics and affine terms, every PReLU random slopes.

    With the default (identity) statistics a folding bug that drops the scale or the shift
    would go unnoticed; with these it changes every embedding.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                uniform(m.running_mean, -0.5, 0.5)
                uniform(m.running_var, 0.3, 3.0)
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.3, 0.3)
            elif isinstance(m, torch.nn.PReLU):
                uniform(m.weight, 0.0, 0.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) *
                               (2.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    uniform(m.bias, -0.1, 0.1)
        net.get_submodule("features").weight.fill_(1.0)  # arcface_torch keeps it fixed at 1
        if hasattr(net, "layer1") and len(net.layer1) > 1:
            # equal tensors: the exporter then shares one initializer through Identity nodes
            net.layer1[1].bn1.bias.copy_(net.layer1[0].bn1.bias)
    return net.eval()


def random_iresnet(arch: str, width: int, size: int, emb: int, seed: int = 0) -> IResNet:
    torch.manual_seed(seed)
    net = build_backbone(arch, width=width, input_size=size, embedding_size=emb)
    return randomise(net, seed)


def ort_run(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # torch2onnx leaves the output's batch at 1: ORT warns
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})[0]


def torch_run(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def assert_same_embeddings(ref: np.ndarray, got: np.ndarray, tol: float = 1e-4) -> None:
    """L2-normalised embeddings within ``tol``; raw ones within ``tol`` relative to their scale."""
    assert ref.shape == got.shape
    assert np.abs(unit(ref) - unit(got)).max() <= tol
    assert np.abs(ref - got).max() <= tol * max(1.0, float(np.abs(ref).max()))


def op_counts(path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def ort_constant_fold(src, dst) -> None:
    """onnxruntime's basic graph optimiser: constant folding and Identity elimination.

    onnx-simplifier is not installed here; ORT's basic level performs the same kind of rewrite
    (the ``Identity`` nodes torch inserts for shared initializers disappear) and writes standard
    ONNX ops only.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def insightface_style(src, dst, *, mean: float = 127.5, scale: float = 1 / 128) -> None:
    """The layout of older insightface graphs: in-graph ``(x - mean) * scale`` on 0..255 pixels,
    ``Reshape`` instead of ``Flatten`` and ``MatMul`` + ``Add`` instead of ``Gemm``."""
    model = onnx.load(str(src))
    g = model.graph
    inp = g.input[0].name
    for n in g.node:
        for k, t in enumerate(n.input):
            if t == inp:
                n.input[k] = "_normalised"
    g.initializer.extend([
        numpy_helper.from_array(np.full((1, 3, 1, 1), mean, np.float32), "_mean"),
        numpy_helper.from_array(np.array(scale, np.float32), "_scale"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "_flat_shape"),
    ])
    nodes = list(g.node)
    out = []
    for n in nodes:
        if n.op_type == "Flatten":
            out.append(helper.make_node("Reshape", [n.input[0], "_flat_shape"], list(n.output),
                                        name="flatten0"))
        elif n.op_type == "Gemm":
            w = next(t for t in g.initializer if t.name == n.input[1])
            g.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(numpy_helper.to_array(w).T), "_fc_wt"))
            out.append(helper.make_node("MatMul", [n.input[0], "_fc_wt"], ["_fc_mm"], name="fc_mm"))
            out.append(helper.make_node("Add", ["_fc_mm", n.input[2]], list(n.output),
                                        name="fc_add"))
        else:
            out.append(n)
    pre = [helper.make_node("Sub", [inp, "_mean"], ["_centred"], name="_minus0"),
           helper.make_node("Mul", ["_centred", "_scale"], ["_normalised"], name="_mul0")]
    del g.node[:]
    g.node.extend(pre + out)
    onnx.save(model, str(dst))
