"""ONNX export of a stored model, one graph per path.

``export_onnx`` writes, for a BTNet, one graph per path (each branch plus its coupled trunk
tail, and the trunk itself), every one taking an ``N x 3 x r x r`` batch with a dynamic batch
dimension, plus ``manifest.json``: the selection policy, the input normalisation, the embedding
size and the fingerprint of the source model. A plain backbone exports as a single path.

The folder is served by :class:`btnet.inference.OnnxEncoder` (``btnet.load(folder)``), the same
encoder loop as PyTorch's over an onnxruntime backend, which imports neither PyTorch nor
``btnet.models`` internals: an export folder can be deployed where only numpy, Pillow and
onnxruntime are installed.

Exporter: PyTorch 2.9+ defaults to the ``torch.export``-based exporter, which needs the
``onnxscript`` package. The TorchScript exporter (``dynamo=False``) still exists in PyTorch 2.13
and needs nothing more, so it is used; where it has been removed the dynamo exporter is tried.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from btnet.inference.onnx_backend import (
    FORMAT,
    INPUT_NAME,
    MANIFEST,
    NUMPY_DTYPES,
    OUTPUT_NAME,
    VERSION,
    WEIGHTS_FILE,
    ort_session,
)
from btnet.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, file_sha256

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
EXPORT_TOLERANCE = 1e-3
SHARE_MIN_BYTES = 1024  # smaller tensors (biases of tiny layers, shape constants) stay inline
ALIGN = 4096  # shared tensors start on page boundaries (memory-mappable)  # export fails loudly beyond this; tests hold exports to 1e-4

NORMALISATION = {
    "layout": "NCHW",
    "channels": "RGB",
    "dtype": "float32",
    "scale": 1.0 / 127.5,
    "offset": -1.0,
    "formula": "x / 127.5 - 1 on uint8 RGB pixels",
    "resize": "to the chosen path's size: area down-sampling, bicubic up-sampling",
    "output": "raw embedding; L2-normalise it (flip fusion: add the mirrored face's first)",
}


# --------------------------------------------------------------------------- export


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    selector: Any = None,
) -> Path:
    """Export every path of the stored model at ``model_dir``; returns the manifest path."""
    import torch

    from btnet.io.fingerprint import model_fingerprint
    from btnet.io.model_store import load_model
    from btnet.models import BranchSelector

    stored = load_model(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if stored.kind == "btnet":
        model = stored.model
        sel = selector or stored.selector or BranchSelector.from_rule(
            model.input_sizes, "min", "near"
        )
        modules = {r: model.path(r) for r in model.input_sizes}
        canonical = model.canonical
        coupling = {r: model.coupling_name(r) for r in model.resolutions}
    else:
        canonical = stored.model.input_size
        sel = BranchSelector((canonical,), (), "min", "custom")
        modules = {canonical: stored.model}
        coupling = {}
    missing = set(sel.paths) - set(modules)
    if missing:
        raise ValueError(f"selector routes to {sorted(missing)}, which the model lacks")
    share = len(modules) > 1  # a BTNet: its paths run the trunk's tail with their own BN
    gen = torch.Generator().manual_seed(0)
    graphs = {}
    for r, module in sorted(modules.items()):
        example = torch.rand(2, 3, r, r, generator=gen) * 2 - 1
        graphs[r] = _trace(module.eval(), example, opset, keep_batchnorm=share)
    shared = share_weights(graphs, out / WEIGHTS_FILE) if share else None
    entries = []
    for r, module in sorted(modules.items()):
        file = out / ("trunk.onnx" if r == canonical else f"path_r{r}.onnx")
        _save_graph(graphs.pop(r), file)
        diff = _verify(module, file, r) if verify else None
        if diff is not None and diff > EXPORT_TOLERANCE:
            raise RuntimeError(f"{file}: onnxruntime differs from PyTorch by {diff:.2e}")
        entries.append(
            {
                "resolution": int(r),
                "kind": "trunk" if r == canonical else "branch",
                "file": file.name,
                "sha256": file_sha256(file),
                "coupling_unit": coupling.get(r),
                "input_name": INPUT_NAME,
                "output_name": OUTPUT_NAME,
                "input_shape": ["batch", 3, int(r), int(r)],
                "max_abs_diff_vs_torch": diff,
                "shared_initializers": shared["uses"][r] if shared else {},
            }
        )
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_kind": stored.kind,
        "name": stored.meta.get("name") or Path(model_dir).name,
        "source_model": str(Path(model_dir).resolve()),
        "fingerprint": model_fingerprint(model_dir),
        "canonical": int(canonical),
        "embedding_size": int(stored.model.embedding_size),
        "normalisation": NORMALISATION,
        "selector": {**sel.to_dict(), "rules": sel.describe()},
        "paths": entries,
        "shared_weights": shared["table"] if shared else None,
        "opset": opset,
        "torch_version": torch.__version__,
    }
    path = out / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def _trace(module: Any, example: Any, opset: int, keep_batchnorm: bool) -> Any:
    """The ONNX graph (``onnx.ModelProto``) of one path, with a dynamic batch dimension.

    ``keep_batchnorm``: export BatchNorm as its own node instead of folding it into the conv
    before it. Every path of a BTNet runs the trunk's convs with its own BatchNorms, so folding
    would give each path its own copy of the trunk's weights; kept apart, they are stored once.
    """
    import onnx
    import torch

    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    if keep_batchnorm:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE  # eval-mode BN, not folded
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                **kwargs,
            )
        except TypeError:  # pragma: no cover - a PyTorch without the TorchScript exporter
            kwargs.pop("training", None)
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                module, (example,), buf, dynamo=True, dynamic_shapes=({0: batch},), **kwargs
            )
    return onnx.load_from_string(buf.getvalue())


def share_weights(graphs: dict[int, Any], weights_file: Path) -> dict[str, Any]:
    """Store every tensor that several graphs hold (the trunk's) once, in ``weights_file``.

    Tensors are matched by content (bytes, dtype and shape), so this needs no knowledge of
    parameter names. In each graph a shared tensor becomes ONNX external data pointing into
    the one file, so every graph still opens on its own with plain onnxruntime; btnet's runtime
    instead reads the file once and hands the same arrays to every session (shared
    initializers). Returns ``{"table": {key: {offset, length, dtype, shape}}, "uses": {r:
    {initializer name: key}}}`` for the manifest.
    """
    from onnx import TensorProto

    owners: dict[str, set[int]] = {}
    for r, g in graphs.items():
        for t in g.graph.initializer:
            if t.HasField("raw_data") and len(t.raw_data) >= SHARE_MIN_BYTES:
                owners.setdefault(_tensor_key(t), set()).add(r)
    table: dict[str, dict[str, Any]] = {}
    uses: dict[int, dict[str, str]] = {r: {} for r in graphs}
    with atomic_path(weights_file) as tmp, open(tmp, "wb") as fh:
        offset = 0
        for r, g in sorted(graphs.items()):
            for t in g.graph.initializer:
                if not t.HasField("raw_data") or len(t.raw_data) < SHARE_MIN_BYTES:
                    continue
                key = _tensor_key(t)
                if key not in owners or len(owners[key]) < 2:
                    continue
                if key not in table:
                    pad = -offset % ALIGN
                    fh.write(b"\0" * pad)
                    offset += pad
                    table[key] = {
                        "offset": offset,
                        "length": len(t.raw_data),
                        "dtype": NUMPY_DTYPES[t.data_type],
                        "shape": list(t.dims),
                    }
                    fh.write(t.raw_data)
                    offset += len(t.raw_data)
                uses[r][t.name] = key
                entry = table[key]
                t.ClearField("raw_data")
                t.data_location = TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", weights_file.name), ("offset", entry["offset"]),
                             ("length", entry["length"])):
                    item = t.external_data.add()
                    item.key, item.value = k, str(v)
    return {"table": {"file": weights_file.name, "sha256": file_sha256(weights_file),
                      "tensors": table}, "uses": uses}


def _tensor_key(t: Any) -> str:
    h = hashlib.sha256(t.raw_data)
    h.update(f"{t.data_type}:{list(t.dims)}".encode())
    return h.hexdigest()[:32]


def _save_graph(graph: Any, file: Path) -> None:
    atomic_write_bytes(file, graph.SerializeToString())


def _verify(module: Any, file: Path, r: int) -> float:
    """Max abs difference between PyTorch and onnxruntime on a fresh batch of three."""
    import torch

    x = torch.rand(3, 3, r, r, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        ref = module(x).float().numpy()
    got = ort_session(file, 1).run(None, {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(ref - got).max())
