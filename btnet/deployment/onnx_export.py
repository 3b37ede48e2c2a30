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
    OUTPUT_NAME,
    VERSION,
    ort_session,
)
from btnet.io.atomic import atomic_write_text, file_sha256

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
EXPORT_TOLERANCE = 1e-3  # export fails loudly beyond this; tests hold exports to 1e-4

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
        sel = selector or stored.selector or BranchSelector.from_rule(model.paths, "min", "near")
        modules = {r: model.export_path(r) for r in model.paths}
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
    entries = []
    gen = torch.Generator().manual_seed(0)
    for r, module in sorted(modules.items()):
        module = module.eval()
        file = out / ("trunk.onnx" if r == canonical else f"path_r{r}.onnx")
        example = torch.rand(2, 3, r, r, generator=gen) * 2 - 1
        _export_module(module, example, file, opset)
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
        "opset": opset,
        "torch_version": torch.__version__,
    }
    path = out / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def _export_module(module: Any, example: Any, file: Path, opset: int) -> None:
    import torch

    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                module,
                (example,),
                str(file),
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                **kwargs,
            )
        except TypeError:  # pragma: no cover - a PyTorch without the TorchScript exporter
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                module, (example,), str(file), dynamo=True, dynamic_shapes=({0: batch},), **kwargs
            )


def _verify(module: Any, file: Path, r: int) -> float:
    """Max abs difference between PyTorch and onnxruntime on a fresh batch of three."""
    import torch

    x = torch.rand(3, 3, r, r, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        ref = module(x).float().numpy()
    got = ort_session(file, 1).run(None, {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(ref - got).max())
