"""onnxruntime backend: serve a ``btnet export onnx`` folder without PyTorch.

The folder's ``manifest.json`` names one graph per path, the routing policy, the embedding size
and the fingerprint of the source model. :class:`OnnxEncoder` is the shared
:class:`~btnet.inference.encoding.RoutedEncoder` over an :class:`OnnxRunner`; nothing here
imports PyTorch or ``btnet.models`` internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from btnet.inference.encoding import RoutedEncoder
from btnet.io.atomic import file_sha256, read_format_json
from btnet.models.selection import BranchSelector

FORMAT = "btnet-onnx"
VERSION = 1
MANIFEST = "manifest.json"
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


def read_manifest(folder: str | Path) -> dict:
    return read_format_json(Path(folder) / MANIFEST, FORMAT, VERSION, "a btnet ONNX export")


def is_onnx_export(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def ort_session(file: Path, threads: int | None = None) -> Any:
    """A CPU onnxruntime session (``threads``: intra-op threads; None = onnxruntime's default)."""
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


class OnnxRunner:
    """Runs path ``size`` through its graph; sessions open on first use."""

    def __init__(self, files: dict[int, Path], threads: int | None = None):
        self.files = files
        self.threads = threads
        self._sessions: dict[int, Any] = {}

    def session(self, size: int) -> Any:
        if size not in self._sessions:
            self._sessions[size] = ort_session(self.files[size], self.threads)
        return self._sessions[size]

    def run(self, size: int, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session(size).run(None, {INPUT_NAME: x})[0]


class OnnxEncoder(RoutedEncoder):
    """Encoder over an export folder: the manifest's policy (or ``selector``), ORT per path.

    Every graph is checked against the manifest's checksum when the folder is opened, so a
    damaged or mixed-up export fails here, not with wrong embeddings later.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        selector: BranchSelector | dict | None = None,
        threads: int | None = None,
        name: str | None = None,
    ):
        folder = Path(folder)
        manifest = read_manifest(folder)
        files = {}
        for e in manifest["paths"]:
            f = folder / e["file"]
            if not f.is_file():
                raise FileNotFoundError(f"{folder}: graph {e['file']} is missing")
            if e.get("sha256") and file_sha256(f) != e["sha256"]:
                raise ValueError(
                    f"{f}: checksum differs from {MANIFEST} (damaged or from another export)"
                )
            files[int(e["resolution"])] = f
        if isinstance(selector, dict):
            selector = BranchSelector.from_dict(selector)
        super().__init__(
            OnnxRunner(files, threads),
            selector or BranchSelector.from_dict(manifest["selector"]),
            canonical=int(manifest["canonical"]),
            embedding_size=int(manifest["embedding_size"]),
            name=name or f"{manifest.get('name', folder.name)} (onnx)",
            served=sorted(files),
            backend="onnx",
        )
        self.folder = folder
        self.manifest = manifest
        self.source = str(folder)
        self._fingerprint = str(manifest["fingerprint"])

    with_selector = RoutedEncoder.replace_selector
