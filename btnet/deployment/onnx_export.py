"""ONNX export of a stored model, one graph per path, and an encoder that runs them.

``export_onnx`` writes, for a BTNet, one graph per path (each branch plus its coupled trunk
tail, and the trunk itself), every one taking an ``N x 3 x r x r`` batch with a dynamic batch
dimension, plus ``manifest.json``: the selection policy, the input normalisation, the embedding
size and the fingerprint of the source model. A plain backbone exports as a single path.

:class:`OnnxEncoder` implements the :class:`btnet.inference.Encoder` protocol on top of
onnxruntime. Its inference path imports neither PyTorch nor ``btnet.models``: routing and
resizing are re-implemented here on numpy (and tested against the PyTorch encoder), so an
export folder can be deployed where only numpy, Pillow and onnxruntime are installed.

Exporter: PyTorch 2.9+ defaults to the ``torch.export``-based exporter, which needs the
``onnxscript`` package. The TorchScript exporter (``dynamo=False``) still exists in PyTorch 2.13
and needs nothing more, so it is used; where it has been removed the dynamo exporter is tried.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from btnet.data.resolution import fit_to
from btnet.io.atomic import atomic_write_text, file_sha256, read_format_json
from btnet.models.selection import BranchSelector

log = logging.getLogger(__name__)

FORMAT = "btnet-onnx"
VERSION = 1
MANIFEST = "manifest.json"
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
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

    from btnet.deployment.fingerprint import model_fingerprint
    from btnet.io.model_store import load_model
    from btnet.models import BranchSelector

    stored = load_model(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if stored.kind == "btnet":
        model = stored.model
        sel = selector or stored.selector or BranchSelector.from_rule(model.input_sizes, "min", "near")
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
    got = _session(file, 1).run(None, {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(ref - got).max())


# --------------------------------------------------------------------------- runtime (no torch)


def _session(file: Path, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX inference needs onnxruntime: pip install 'btnet[onnx]'") from exc
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(file), sess_options=opts, providers=["CPUExecutionProvider"])


def select_path(selector: dict, height: int, width: int) -> int:
    """The manifest's routing rule: ``BranchSelector.select`` (plain Python, no torch)."""
    return BranchSelector.from_dict(selector).select(height, width)


def normalise_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 HxWx3 RGB images -> float32 NCHW in [-1, 1] (``btnet.data.transforms.to_tensor``)."""
    x = np.stack([np.asarray(im) for im in images]).astype(np.float32)
    return np.ascontiguousarray((x / 127.5 - 1.0).transpose(0, 3, 1, 2))


@dataclass
class OnnxEncodeResult:
    """Same fields as ``btnet.inference.EncodeResult``."""

    embeddings: np.ndarray
    paths: list[int]
    norms: np.ndarray | None = None


def read_manifest(folder: str | Path) -> dict:
    return read_format_json(Path(folder) / MANIFEST, FORMAT, VERSION, "a btnet ONNX export")


class OnnxEncoder:
    """Encoder over an export folder: route by the manifest's policy, batch by path, run ORT."""

    shared_space = True

    def __init__(
        self,
        folder: str | Path,
        *,
        selector: Any = None,
        threads: int | None = None,
        name: str | None = None,
    ):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.canonical = int(self.manifest["canonical"])
        self.embedding_size = int(self.manifest["embedding_size"])
        self.fingerprint = str(self.manifest["fingerprint"])
        self.name = name or f"{self.manifest.get('name', self.folder.name)} (onnx)"
        self.files = {int(e["resolution"]): self.folder / e["file"] for e in self.manifest["paths"]}
        if selector is not None and hasattr(selector, "to_dict"):
            selector = selector.to_dict()
        self.selector = dict(selector or self.manifest["selector"])
        missing = {int(p) for p in self.selector["paths"]} - set(self.files)
        if missing:
            raise ValueError(f"selector routes to {sorted(missing)}, which this export lacks")
        for e in self.manifest["paths"]:
            f = self.folder / e["file"]
            if not f.is_file():
                raise FileNotFoundError(f"{self.folder}: graph {e['file']} is missing")
            if e.get("sha256") and file_sha256(f) != e["sha256"]:
                raise ValueError(
                    f"{f}: checksum differs from {MANIFEST} (damaged or from another export)"
                )
        self.threads = threads
        self._sessions: dict[int, Any] = {}

    @property
    def paths(self) -> tuple[int, ...]:
        return tuple(sorted(self.files))

    def route(self, height: int, width: int) -> int:
        return select_path(self.selector, height, width)

    def session(self, path: int) -> Any:
        if path not in self._sessions:
            self._sessions[path] = _session(self.files[path], self.threads)
        return self._sessions[path]

    def run_path(self, path: int, x: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) embeddings of an NCHW float32 batch through one path."""
        return self.session(path).run(None, {INPUT_NAME: x})[0]

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 64,
        flip: bool = False,
        progress: bool = False,
    ) -> OnnxEncodeResult:
        n = len(images)
        out = np.zeros((n, self.embedding_size), dtype=np.float32)
        paths = [0] * n
        groups: dict[int, list[int]] = {}
        for i, img in enumerate(images):
            paths[i] = self.route(*img.shape[:2])
            groups.setdefault(paths[i], []).append(i)
        for path, idx in groups.items():
            for b in range(0, len(idx), batch_size):
                part = idx[b : b + batch_size]
                x = normalise_batch([fit_to(images[i], path) for i in part])
                emb = self.run_path(path, x)
                if flip:
                    emb = emb + self.run_path(path, np.ascontiguousarray(x[..., ::-1]))
                out[part] = emb
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return OnnxEncodeResult((out / norms).astype(np.float32), paths,
                                np.linalg.norm(out, axis=1).astype(np.float32))
