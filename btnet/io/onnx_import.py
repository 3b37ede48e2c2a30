"""Import an IResNet recogniser from an ONNX graph, as arcface_torch's ``torch2onnx.py`` writes it.

Many users hold a face recogniser only as ONNX (insightface's model packs ship IResNet-50
graphs such as ``w600k_r50.onnx``). :func:`load_onnx_backbone` rebuilds btnet's IResNet (the
insightface module layout) from such a graph so it can be a BTNet trunk, and reproduces the
graph's embeddings under onnxruntime.

What the exporter did, and how it is undone:

* An eval-mode export folds every BatchNorm that follows a convolution into that convolution
  (weights scaled, a bias added). btnet's convolutions have no bias, so each folded BatchNorm
  comes back as an *identity* BatchNorm carrying the bias: running mean 0, weight 1 and a
  running variance chosen so that ``var + eps`` is exactly 1 in float32, which makes it
  ``x + bias`` bit for bit. The module layout stays insightface's, so strict loading and the
  per-resolution BatchNorm copies of BTNet branches work as on any other trunk.
* BatchNorms that follow no convolution (each block's ``bn1``, the head's ``bn2`` and
  ``features``) remain ``BatchNormalization`` nodes and map one to one.
* The exporter shares equal initializers behind ``Identity`` nodes; optimisers may leave
  ``Constant``/``Unsqueeze`` nodes: constants are resolved through them. ``Dropout`` and
  ``Identity`` on activations are pass-throughs.

The graph is read by its structure, not its node names (those differ between exporters and
versions), starting from the input and placing every node onto a module; the first node that
cannot be placed is named in the error. Depth (blocks per stage), width (stem channels),
embedding size and canonical size (input shape, else the flattened head) come from the graph.

Input convention: a graph either normalises inside (``Sub``/``Mul``/``Div``/``Add`` by
constants before the first convolution: older insightface graphs, which take 0..255 pixels)
or takes normalised input (arcface_torch exports: RGB, (x - 127.5) / 127.5, which is what every
btnet model takes). The first case is detected and, where the in-graph mapping sends pixel
127.5 to 0 (true of every insightface convention), its per-channel scale is folded exactly into
the first convolution; any other mapping is refused. In the second case the graph cannot say
how it was trained, so arcface_torch's convention is *assumed* and recorded as such. Channel
order is never visible in a graph; RGB is assumed (insightface feeds RGB). Both go into the
returned ``info`` and, through :class:`btnet.io.trunks.Trunk`, into every model built on it.

Reading uses the ``onnx`` protobuf parser only: nothing in the file is executed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from btnet.io.atomic import file_sha256
from btnet.models.conv_scale import IDENTITY_VAR, unit_output_scale

BN_EPS = 1e-5  # btnet's (and arcface_torch's) BatchNorm epsilon
assert np.float32(IDENTITY_VAR) + np.float32(BN_EPS) == np.float32(1.0)

PIXEL_CENTRE = 127.5  # btnet feeds (x - 127.5) / 127.5
_PASSTHROUGH = {"Identity", "Dropout"}
_CONST_OPS = {"Constant", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Cast"}
_PREPROCESS_OPS = {"Sub", "Mul", "Div", "Add"}


class OnnxImportError(ValueError):
    """The graph is not an IResNet btnet can map exactly (the message names where it failed)."""


def load_onnx_backbone(path: str | Path, *, input_size: int | None = None
                       ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(IResNet in eval mode, info)`` from an IResNet ONNX graph; see the module docstring.

    ``input_size`` is needed only where the graph's spatial input size is symbolic; it must then
    be consistent with the head. ``info`` is JSON-able: architecture found, how the canonical
    size was found, the input convention and how many BatchNorms were folded.
    """
    from btnet.models import build_backbone
    from btnet.models.iresnet import IRESNET_LAYERS

    path = Path(path)
    model = _read_model(path)
    walker = _Walker(model, path)
    found = walker.walk()
    layers = tuple(found["layers"])
    arch = next((n for n, v in IRESNET_LAYERS.items() if tuple(v) == layers), None)
    if arch is None:
        known = ", ".join(f"{n[len('iresnet'):]}: {v}" for n, v in IRESNET_LAYERS.items())
        raise OnnxImportError(f"{path}: the graph is an IResNet with {layers} blocks per stage, "
                              f"which matches no IResNet depth btnet builds ({known})")
    size, size_from = _canonical_size(path, found, input_size)
    backbone = build_backbone(arch, input_size=size, width=found["width"],
                              embedding_size=found["embedding_size"])
    state = backbone.state_dict()
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    missing = sorted(expected - set(walker.params))
    extra = sorted(set(walker.params) - set(state))
    if missing or extra:  # a walker bug, never the user's file: fail loudly
        raise RuntimeError(f"{path}: import mapped {len(walker.params)} tensors; missing "
                           f"{missing[:3]}, unexpected {extra[:3]}")
    for key, value in walker.params.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise OnnxImportError(f"{path}: {key} has shape {tuple(value.shape)} in the graph, "
                                  f"{tuple(state[key].shape)} in a {arch} of width "
                                  f"{found['width']}")
        state[key] = torch.from_numpy(np.array(value, dtype=np.float32))
    backbone.load_state_dict(state, strict=True)
    info = {
        "format": "onnx",
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                     default=None),
        "input_name": found["input_name"],
        "output_name": found["output_name"],
        "batch": found["batch"],
        "arch": arch,
        "layers": list(layers),
        "width": found["width"],
        "embedding_size": found["embedding_size"],
        "input_size": size,
        "input_size_from": size_from,
        "batchnorms": {
            "kept": walker.kept_bn,
            "folded_into_conv": sum(layer != "fc" for layer, _ in walker.folded),
            "folded_into_fc": sum(layer == "fc" for layer, _ in walker.folded),
            "identity": [bn for _, bn in walker.folded],  # see restore_batchnorm_statistics
        },
        "weights_dtype": walker.weights_dtype,
        "unused_initializers": walker.unused_initializers(),
        "input_convention": found["input_convention"],
    }
    return backbone.eval(), info


def onnx_input(path: str | Path, normalised: np.ndarray,
               convention: dict[str, Any] | None = None) -> np.ndarray:
    """What the graph at ``path`` must be fed for btnet's normalised batch ``normalised``.

    A graph that normalises inside takes 0..255 pixels: ``(x + 1) * 127.5``. Used to compare the
    graph and the import on the same images. ``convention`` (``info["input_convention"]``)
    saves reading the graph again.
    """
    if convention is None:
        convention = _Walker(_read_model(Path(path)), Path(path)).walk()["input_convention"]
    x = np.asarray(normalised, dtype=np.float32)
    if convention["in_graph"]:
        return ((x + 1.0) * PIXEL_CENTRE).astype(np.float32)
    return x


def verify_against_onnxruntime(path: str | Path, backbone: torch.nn.Module,
                               info: dict[str, Any], *, batch: int = 2, seed: int = 0
                               ) -> float | None:
    """Largest difference of L2-normalised embeddings, graph (onnxruntime) vs import.

    Random faces in [-1, 1] at the canonical size; ``None`` where onnxruntime is not installed.
    A structural walk checks every attribute it knows of; this catches anything it does not.
    """
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    size = int(info["input_size"])
    x = np.random.default_rng(seed).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # torch2onnx leaves the output's batch fixed at 1: ORT warns
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = x if info["batch"] == "dynamic" or int(info["batch"]) == batch else x[:1]
    ref = sess.run(None, {info["input_name"]: onnx_input(path, feed, info["input_convention"])})[0]
    with torch.inference_mode():
        got = backbone.eval()(torch.from_numpy(feed)).numpy()

    from btnet.inference.encoding import l2_normalize

    return float(np.abs(l2_normalize(ref) - l2_normalize(got)).max())


def restore_batchnorm_statistics(backbone: torch.nn.Module, batches: Any) -> list[str]:
    """Give the identity BatchNorms of an import real statistics; the function is unchanged.

    Why: an identity BatchNorm computes the graph exactly in eval mode, but a BatchNorm that
    trains (a branch path's per-resolution copy in train mode) normalises by batch statistics,
    which would wipe out the scale folded into the layer before it. Each such layer is rescaled
    to unit output std on faces at the canonical size (``batches``: normalised N x 3 x S x S
    tensors) and its BatchNorm given the measured scale and mean
    (:func:`btnet.models.conv_scale.unit_output_scale` with ``folded_only``). Returns the
    BatchNorms rewritten.
    """
    return unit_output_scale(backbone, batches, folded_only=True)


# --------------------------------------------------------------------------- reading


def _read_model(path: Path) -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("importing ONNX trunks needs onnx: pip install 'btnet[onnx]'") from exc
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(path.parent))  # refuses paths outside it
    except Exception as exc:
        raise OnnxImportError(f"{path}: not a readable ONNX model ({exc})") from exc
    return model


def _canonical_size(path: Path, found: dict[str, Any], input_size: int | None
                    ) -> tuple[int, str]:
    final, graph_size = found["final_map"], found["graph_size"]
    if graph_size is not None:
        if input_size is not None and int(input_size) != graph_size:
            raise OnnxImportError(f"{path}: the graph takes {graph_size}x{graph_size} faces, "
                                  f"not {input_size}x{input_size}")
        if math.ceil(graph_size / 16) != final:
            raise OnnxImportError(f"{path}: a {graph_size}x{graph_size} input gives a "
                                  f"{math.ceil(graph_size / 16)}-cell final map, but the head "
                                  f"flattens {final}x{final}")
        return graph_size, "graph input shape"
    if input_size is not None:
        if math.ceil(int(input_size) / 16) != final:
            raise OnnxImportError(f"{path}: input size {input_size} does not fit the head's "
                                  f"{final}x{final} map (sizes {16 * final - 15}..{16 * final})")
        return int(input_size), "given (the graph's input size is symbolic)"
    return 16 * final, (f"head: {final}x{final} final map -> {16 * final} (the graph's input "
                        f"size is symbolic; any of {16 * final - 15}..{16 * final} fits)")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto
            value = numpy_helper.to_array(value)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[a.name] = value
    return out


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """A constant that broadcasts over NCHW as one value per channel (or one for all)."""
    v = np.asarray(value, dtype=np.float64)
    if v.size == 1:
        return np.full(channels, float(v.reshape(-1)[0]))
    shape = tuple(v.shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    # (C,1,1) and (1,C,1,1) broadcast per channel; (C,) would broadcast over the width
    return v.reshape(-1) if shape == (channels, 1, 1) else None


# --------------------------------------------------------------------------- the walk


class _Walker:
    """Places every node of an IResNet graph onto the insightface module names."""

    def __init__(self, model: Any, path: Path):
        from onnx import numpy_helper

        g = model.graph
        self.path = path
        self.graph = g
        self.nodes = list(g.node)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                              for t in g.initializer}
        self.initializers = set(self.consts)
        self.used_consts: set[str] = set()
        self.placed: set[int] = set()
        self.alias: dict[str, str] = {}
        self.params: dict[str, np.ndarray] = {}
        self.kept_bn = 0
        self.folded: list[tuple[str, str]] = []  # (conv or fc, the identity BatchNorm after it)
        dtypes = {str(v.dtype) for v in self.consts.values() if v.dtype.kind == "f"}
        self.weights_dtype = ",".join(sorted(dtypes)) or "none"
        self._fold_constants()
        self._resolve_passthrough()
        self.users_of: dict[str, list[int]] = defaultdict(list)
        self.producer: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for t in n.output:
                self.producer[t] = i
            if i in self.placed:
                continue
            for t in n.input:
                if t and t not in self.consts:
                    self.users_of[self.canon(t)].append(i)

    # -- bookkeeping ------------------------------------------------------------------------
    def label(self, i: int) -> str:
        n = self.nodes[i]
        return f"'{n.name or '(unnamed)'}' ({n.op_type}, node #{i})"

    def fail(self, i: int, why: str) -> OnnxImportError:
        return OnnxImportError(f"{self.path}: cannot place node {self.label(i)} on an IResNet: "
                               f"{why}")

    def canon(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def const(self, i: int, k: int, what: str) -> np.ndarray:
        n = self.nodes[i]
        name = n.input[k] if k < len(n.input) else ""
        if not name or name not in self.consts:
            raise self.fail(i, f"its {what} (input {k}) is not a constant")
        self.used_consts.add(name)
        return self.consts[name]

    def optional_const(self, i: int, k: int, what: str) -> np.ndarray | None:
        n = self.nodes[i]
        if k >= len(n.input) or not n.input[k]:
            return None
        return self.const(i, k, what)

    def users(self, t: str) -> list[int]:
        return sorted(u for u in self.users_of.get(self.canon(t), []) if u not in self.placed)

    def only_user(self, t: str, what: str) -> int:
        users = self.users(t)
        if not users:
            src = self.producer.get(self.canon(t))
            where = f"after node {self.label(src)}" if src is not None else f"at input {t!r}"
            raise OnnxImportError(f"{self.path}: the graph ends {where} where {what} should "
                                  "follow (not an IResNet)")
        if len(users) > 1:
            raise self.fail(users[1], f"a second reader of {t!r}, where only {what} should be")
        return users[0]

    def take(self, i: int, ops: set[str], what: str) -> Any:
        n = self.nodes[i]
        if n.op_type not in ops:
            raise self.fail(i, f"expected {what}")
        self.placed.add(i)
        return n

    def unused_initializers(self) -> int:
        """Initializers no placed node reads (dead weights; onnxruntime ignores them too)."""
        read = {t for i in self.placed for t in self.nodes[i].input}
        return len(self.initializers - read - self.used_consts)

    # -- constants and pass-throughs --------------------------------------------------------
    def _fold_constants(self) -> None:
        from onnx import helper

        for i, n in enumerate(self.nodes):
            if n.op_type not in _CONST_OPS:
                continue
            inputs = [t for t in n.input if t]
            if not all(t in self.consts for t in inputs):
                continue
            a = _attrs(n)
            vals = [self.consts[t] for t in n.input if t]
            if n.op_type == "Constant":
                value = next(iter(a.values()), None)
                if value is None:
                    continue
                value = np.asarray(value)
            elif n.op_type == "Identity":
                value = vals[0]
            elif n.op_type == "Cast":
                value = vals[0].astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))
            elif n.op_type == "Reshape":
                shape = [int(d) if d != 0 else vals[0].shape[j] for j, d in enumerate(vals[1])]
                value = vals[0].reshape(shape)
            else:  # Unsqueeze / Squeeze: axes from the attribute (opset < 13) or an input
                axes = [int(x) for x in (a.get("axes") if "axes" in a else
                                         (vals[1] if len(vals) > 1 else []))]
                if n.op_type == "Squeeze":
                    value = np.squeeze(vals[0], axis=tuple(axes) if axes else None)
                else:
                    value = vals[0]
                    rank = value.ndim + len(axes)
                    for ax in sorted(x % rank for x in axes):
                        value = np.expand_dims(value, ax)
            for t in n.output[:1]:
                self.consts[t] = np.asarray(value)
            self.placed.add(i)

    def _resolve_passthrough(self) -> None:
        for i, n in enumerate(self.nodes):
            if i in self.placed or n.op_type not in _PASSTHROUGH or not n.input:
                continue
            if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
                mode = self.consts.get(n.input[2])
                if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
                    continue  # a training-mode Dropout is no pass-through: left unplaced
            self.alias[n.output[0]] = n.input[0]
            self.placed.add(i)

    # -- the structure ----------------------------------------------------------------------
    def walk(self) -> dict[str, Any]:
        g = self.graph
        inputs = [v for v in g.input if v.name not in self.initializers]
        if len(inputs) != 1:
            raise OnnxImportError(f"{self.path}: an IResNet graph has one input, this one has "
                                  f"{len(inputs)} ({', '.join(v.name for v in inputs)})")
        if len(g.output) != 1:
            raise OnnxImportError(f"{self.path}: an IResNet graph has one output (the "
                                  f"embedding), this one has {len(g.output)}")
        inp = inputs[0]
        dims = self._dims(inp)
        if inp.type.tensor_type.elem_type != 1:  # FLOAT
            raise OnnxImportError(f"{self.path}: input {inp.name!r} is not float32")
        if len(dims) != 4 or (isinstance(dims[1], int) and dims[1] != 3):
            raise OnnxImportError(f"{self.path}: input {inp.name!r} has shape {dims}; an "
                                  "IResNet takes N x 3 x H x W")
        h, w = dims[2], dims[3]
        graph_size = None
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise OnnxImportError(f"{self.path}: input is {h}x{w}; btnet trunks are square")
            graph_size = h

        x, convention, scale = self._preprocessing(inp.name)
        x, width = self._stem(x, scale)
        layers, cin = [], width
        for stage in range(1, 5):
            planes = width * 2 ** (stage - 1)
            x = self._block(x, cin, planes, 2, f"layer{stage}.0", downsample=True)
            count = 1
            while self._plain_block_follows(x):
                x = self._block(x, planes, planes, 1, f"layer{stage}.{count}", downsample=False)
                count += 1
            layers.append(count)
            cin = planes
        out, emb, final = self._head(x, cin)
        if self.canon(g.output[0].name) != self.canon(out):
            raise OnnxImportError(f"{self.path}: the graph's output {g.output[0].name!r} is not "
                                  "the embedding (the head's BatchNorm output)")
        left = [i for i in range(len(self.nodes)) if i not in self.placed]
        if left:
            raise self.fail(left[0], "left over after the whole IResNet was placed")
        return {"layers": layers, "width": width, "embedding_size": emb, "final_map": final,
                "graph_size": graph_size, "input_name": inp.name,
                "output_name": g.output[0].name,
                "batch": dims[0] if isinstance(dims[0], int) else "dynamic",
                "input_convention": convention}

    @staticmethod
    def _dims(value_info: Any) -> list[int | str]:
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in shape.dim]

    def _preprocessing(self, name: str) -> tuple[str, dict[str, Any], np.ndarray]:
        """Affine per-channel ops on the input: ``x_graph = a * pixels + b``."""
        a, b = np.ones(3), np.zeros(3)
        steps: list[dict[str, Any]] = []
        x = name
        while True:
            users = self.users(x)
            if len(users) != 1 or self.nodes[users[0]].op_type not in _PREPROCESS_OPS:
                break
            i = users[0]
            n = self.nodes[i]
            other = [k for k, t in enumerate(n.input) if self.canon(t) != self.canon(x)]
            if len(other) != 1 or n.input[other[0]] not in self.consts:
                raise self.fail(i, "input preprocessing by anything but a constant")
            c = _per_channel(self.const(i, other[0], "constant"), 3)
            if c is None:
                raise self.fail(i, "input preprocessing by a constant that is not per channel")
            first = other[0] == 1
            if n.op_type == "Sub":
                a, b = (a, b - c) if first else (-a, c - b)
            elif n.op_type == "Add":
                b = b + c
            elif n.op_type == "Mul":
                a, b = a * c, b * c
            elif first:  # Div(x, c)
                a, b = a / c, b / c
            else:
                raise self.fail(i, "division of a constant by the input")
            steps.append({"node": n.name or f"#{i}", "op": n.op_type,
                          "value": [float(v) for v in c]})
            self.placed.add(i)
            x = n.output[0]
        if not steps:
            convention = {
                "channels": "RGB", "layout": "NCHW", "mean": PIXEL_CENTRE, "std": PIXEL_CENTRE,
                "formula": "(x - 127.5) / 127.5 on 0..255 RGB pixels",
                "in_graph": False,
                "source": "assumed: the graph takes normalised input and cannot say how; "
                          "arcface_torch (torch2onnx.py) exports expect this normalisation",
            }
            return x, convention, np.ones(3)
        offset = PIXEL_CENTRE * a + b  # where btnet's zero (pixel 127.5) lands in the graph
        if not np.allclose(offset, 0.0, atol=1e-6):
            raise self.fail(self.producer[x], (
                f"the graph's preprocessing maps pixel 127.5 to {offset.tolist()}, not 0; btnet "
                "feeds (x - 127.5) / 127.5 and can fold only a scale into the first convolution"))
        mean, std = (-b / a), 1.0 / a
        convention = {
            "channels": "RGB (assumed: a graph cannot show channel order)", "layout": "NCHW",
            "mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "formula": "(x - mean) / std on 0..255 pixels, inside the graph",
            "in_graph": True, "graph_preprocessing": steps,
            "source": "graph: preprocessing nodes before the first convolution",
            "folded_scale": [float(v) for v in PIXEL_CENTRE * a],
            "btnet_input": "(x - 127.5) / 127.5; the graph's scale is folded into conv1",
        }
        return x, convention, PIXEL_CENTRE * a

    def _stem(self, x: str, scale: np.ndarray) -> tuple[str, int]:
        i = self.only_user(x, "the stem convolution")
        out, width = self._conv_bn(i, 3, None, 3, 1, "conv1", "bn1", "the stem convolution")
        self.params["conv1.weight"] = self.params["conv1.weight"] * scale.reshape(1, 3, 1, 1)
        out = self._prelu(out, width, "prelu")
        return out, width

    def _conv_bn(self, i: int, cin: int, cout: int | None, k: int, stride: int,
                 conv: str, bn: str, what: str) -> tuple[str, int]:
        """A Conv node (and the BatchNorm after it, if not folded) -> ``conv``/``bn`` tensors."""
        desc = f"{what} ({k}x{k}, stride {stride}, {cin} input channels)"
        n = self.take(i, {"Conv"}, desc)
        a = _attrs(n)
        pad = k // 2
        checks = {
            "kernel": tuple(a.get("kernel_shape", ())) in ((k, k), ()),
            "stride": tuple(a.get("strides", (1, 1))) == (stride, stride),
            "padding": tuple(a.get("pads", (0, 0, 0, 0))) == (pad,) * 4
            and a.get("auto_pad", "NOTSET") in ("NOTSET", ""),
            "dilation": tuple(a.get("dilations", (1, 1))) == (1, 1),
            "groups": int(a.get("group", 1)) == 1,
        }
        weight = self.const(i, 1, "weight")
        out_ch = int(weight.shape[0])
        checks["shape"] = weight.shape == (out_ch, cin, k, k) and cout in (None, out_ch)
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            got = (f"kernel {a.get('kernel_shape')}, strides {a.get('strides')}, pads "
                   f"{a.get('pads')}, group {a.get('group', 1)}, weight {tuple(weight.shape)}")
            raise self.fail(i, f"expected {desc}; found {got} ({', '.join(bad)} differ)")
        bias = self.optional_const(i, 2, "bias")
        self.params[f"{conv}.weight"] = weight.astype(np.float64)
        out = n.output[0]
        users = self.users(out)
        if len(users) == 1 and self.nodes[users[0]].op_type == "BatchNormalization":
            out = self._batchnorm(users[0], out_ch, bn, shift=bias)
        else:
            self._identity_bn(conv, bn, out_ch, bias)
        return out, out_ch

    def _identity_bn(self, layer: str, bn: str, channels: int, bias: np.ndarray | None) -> None:
        self.params[f"{bn}.weight"] = np.ones(channels)
        self.params[f"{bn}.bias"] = np.zeros(channels) if bias is None else bias.reshape(-1)
        self.params[f"{bn}.running_mean"] = np.zeros(channels)
        self.params[f"{bn}.running_var"] = np.full(channels, IDENTITY_VAR)
        self.folded.append((layer, bn))

    def _batchnorm(self, i: int, channels: int, bn: str, shift: np.ndarray | None = None) -> str:
        """A BatchNormalization node onto ``bn``; ``shift`` is a conv bias before it."""
        n = self.take(i, {"BatchNormalization"}, f"a BatchNorm of {channels} channels")
        if len(n.output) > 1 and any(t and self.users(t) for t in n.output[1:]):
            raise self.fail(i, "a training-mode BatchNorm (its statistics outputs are used)")
        eps = float(_attrs(n).get("epsilon", 1e-5))
        names = ("scale", "bias", "mean", "variance")
        scale, beta, mean, var = (self.const(i, k + 1, w).astype(np.float64).reshape(-1)
                                  for k, w in enumerate(names))
        if not all(v.size == channels for v in (scale, beta, mean, var)):
            raise self.fail(i, f"expected a BatchNorm of {channels} channels, found "
                               f"{scale.size}")
        if shift is not None:
            mean = mean - shift.reshape(-1)
        self.params[f"{bn}.weight"] = scale
        self.params[f"{bn}.bias"] = beta
        self.params[f"{bn}.running_mean"] = mean
        self.params[f"{bn}.running_var"] = var + (eps - BN_EPS)  # same var + eps as the graph
        self.kept_bn += 1
        return n.output[0]

    def _prelu(self, x: str, channels: int, name: str) -> str:
        i = self.only_user(x, "a PReLU")
        n = self.take(i, {"PRelu"}, f"a PReLU of {channels} channels")
        slope = self.const(i, 1, "slope").reshape(-1).astype(np.float64)
        if slope.size == 1:
            slope = np.full(channels, float(slope[0]))
        if slope.size != channels:
            raise self.fail(i, f"expected {channels} PReLU slopes, found {slope.size}")
        self.params[f"{name}.weight"] = slope
        return n.output[0]

    def _plain_block_follows(self, x: str) -> bool:
        ops = sorted(self.nodes[u].op_type for u in self.users(x))
        return ops == ["Add", "BatchNormalization"]

    def _block(self, x: str, cin: int, planes: int, stride: int, name: str, downsample: bool
               ) -> str:
        users = self.users(x)
        wanted = ["BatchNormalization", "Conv" if downsample else "Add"]
        ops = [self.nodes[u].op_type for u in users]
        if sorted(ops) != sorted(wanted):
            what = ("the first block of a stage (a BatchNorm and a 1x1 stride-2 shortcut "
                    "convolution reading the same tensor)" if downsample else "a residual block")
            odd = [u for u in users if self.nodes[u].op_type not in wanted] or users[2:]
            if odd:
                raise self.fail(odd[0], f"expected {what}")
            raise OnnxImportError(f"{self.path}: after node {self.label(self.producer[x])} "
                                  f"expected {what}; found {sorted(ops)} (not an IResNet)")
        bn_i = users[ops.index("BatchNormalization")]
        h = self._batchnorm(bn_i, cin, f"{name}.bn1")
        i = self.only_user(h, f"{name}'s first 3x3 convolution")
        h, _ = self._conv_bn(i, cin, planes, 3, 1, f"{name}.conv1", f"{name}.bn2",
                             f"{name}'s first convolution")
        h = self._prelu(h, planes, f"{name}.prelu")
        i = self.only_user(h, f"{name}'s second 3x3 convolution")
        h, _ = self._conv_bn(i, planes, planes, 3, stride, f"{name}.conv2", f"{name}.bn3",
                             f"{name}'s second convolution")
        shortcut = x
        if downsample:
            ds_i = users[ops.index("Conv")]
            shortcut, _ = self._conv_bn(ds_i, cin, planes, 1, stride, f"{name}.downsample.0",
                                        f"{name}.downsample.1", f"{name}'s shortcut")
        i = self.only_user(h, f"{name}'s residual sum")
        n = self.take(i, {"Add"}, f"{name}'s residual sum")
        if sorted(self.canon(t) for t in n.input) != sorted([self.canon(h), self.canon(shortcut)]):
            raise self.fail(i, f"{name}'s residual sum must add the block's branch and its "
                               "shortcut")
        return n.output[0]

    def _head(self, x: str, channels: int) -> tuple[str, int, int]:
        i = self.only_user(x, "the head's BatchNorm (bn2)")
        h = self._batchnorm(i, channels, "bn2")
        i = self.only_user(h, "the flatten before fc")
        n = self.take(i, {"Flatten", "Reshape"}, "the flatten before fc")
        if n.op_type == "Flatten" and int(_attrs(n).get("axis", 1)) != 1:
            raise self.fail(i, "expected Flatten(axis=1)")
        if n.op_type == "Reshape":
            shape = self.const(i, 1, "shape").reshape(-1)
            if shape.size != 2 or not (shape[1] == -1 or shape[0] in (0, -1)):
                raise self.fail(i, f"expected a reshape to (batch, features), found {shape}")
        h = n.output[0]
        i = self.only_user(h, "the fc layer")
        n = self.take(i, {"Gemm", "MatMul"}, "the fc layer (Gemm or MatMul)")
        weight = self.const(i, 1, "fc weight").astype(np.float64)
        if n.op_type == "Gemm":
            a = _attrs(n)
            if float(a.get("alpha", 1.0)) != 1.0 or int(a.get("transA", 0)) != 0:
                raise self.fail(i, "expected Gemm with alpha 1 and no transA")
            if not int(a.get("transB", 0)):
                weight = weight.T
            bias = self.optional_const(i, 2, "fc bias")
            if bias is not None:
                bias = bias.astype(np.float64).reshape(-1) * float(a.get("beta", 1.0))
            h = n.output[0]
        else:
            weight = weight.T
            h = n.output[0]
            users = self.users(h)
            bias = None
            if len(users) == 1 and self.nodes[users[0]].op_type == "Add":
                j = users[0]
                other = [k for k, t in enumerate(self.nodes[j].input)
                         if self.canon(t) != self.canon(h)]
                if len(other) == 1:
                    bias = self.const(j, other[0], "fc bias").astype(np.float64).reshape(-1)
                    self.placed.add(j)
                    h = self.nodes[j].output[0]
        emb, fc_in = weight.shape
        cells = fc_in / channels
        final = math.isqrt(int(cells)) if cells == int(cells) else 0
        if final < 1 or final * final != cells:
            raise self.fail(i, f"fc takes {fc_in} inputs, not {channels} channels x a square map")
        self.params["fc.weight"] = weight
        self.params["fc.bias"] = np.zeros(emb) if bias is None else bias
        users = self.users(h)
        if users and self.nodes[users[0]].op_type == "BatchNormalization" and len(users) == 1:
            h = self._batchnorm(users[0], emb, "features")
        else:  # an optimiser folded it into fc
            self._identity_bn("fc", "features", emb, None)
        extra = self.users(h)
        if extra:
            raise self.fail(extra[0], "the graph should end at the embedding (the features "
                                      "BatchNorm); btnet L2-normalises outside the model")
        return h, emb, final
