"""onnxruntime backend: serve a ``btnet export onnx`` folder without PyTorch.

The folder's ``manifest.json`` names one graph per path, the routing policy, the embedding size
and the fingerprint of the source model. The trunk's weights, which every path runs, are stored
once (``weights.bin``); they are read once and given to every path's session as shared
initializers, so serving all paths holds one copy of the trunk, not one per path. :class:`OnnxEncoder` is the shared
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
VERSION = 2  # 2: the trunk's weights stored once in WEIGHTS_FILE, shared by every path graph
MANIFEST = "manifest.json"
WEIGHTS_FILE = "weights.bin"
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
NUMPY_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64"}  # ONNX TensorProto data types


def read_manifest(folder: str | Path) -> dict:
    return read_format_json(Path(folder) / MANIFEST, FORMAT, VERSION, "a btnet ONNX export")


def is_onnx_export(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


# onnxruntime rewrites that would give each session its own copy of shared weights: folding a
# path's BatchNorm into the trunk's conv / matmul, and re-laying convs out in blocked NCHWc.
COPYING_OPTIMIZERS = ("ConvBNFusion", "MatMulBNFusion", "NchwcTransformer")


def _onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX inference needs onnxruntime: pip install 'btnet[onnx]'") from exc
    return ort


def ort_session(
    file: Path,
    threads: int | None = None,
    initializers: dict[str, Any] | None = None,
    config: dict[str, str] | None = None,
) -> Any:
    """A CPU onnxruntime session (``threads``: intra-op threads; None = onnxruntime's default).

    ``initializers`` (name -> OrtValue) replace the graph's own tensors of those names without
    copying them: how several path graphs share one copy of the trunk's weights. ``config``:
    extra session config entries (e.g. ``session.set_denormal_as_zero``).
    """
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    kwargs: dict[str, Any] = {}
    if initializers:
        for name, value in initializers.items():
            opts.add_initializer(name, value)
        # Each of these makes a per-session transformed copy of the weights it touches.
        opts.add_session_config_entry("session.disable_prepacking", "1")
        kwargs["disabled_optimizers"] = list(COPYING_OPTIMIZERS)
    return ort.InferenceSession(
        str(file), sess_options=opts, providers=["CPUExecutionProvider"], **kwargs
    )


class SharedWeights:
    """The export's ``weights.bin``, read once; each tensor handed out as a (cached) OrtValue."""

    def __init__(self, folder: Path, table: dict[str, Any]):
        path = folder / table["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: shared weights {table['file']} are missing")
        if table.get("sha256") and file_sha256(path) != table["sha256"]:
            raise ValueError(f"{path}: checksum differs from {MANIFEST} (damaged or from another export)")
        self.data = np.fromfile(path, dtype=np.uint8)
        self.tensors = table["tensors"]
        self._values: dict[str, Any] = {}

    def array(self, key: str) -> np.ndarray:
        t = self.tensors[key]
        raw = self.data[int(t["offset"]) : int(t["offset"]) + int(t["length"])]
        return raw.view(np.dtype(t["dtype"])).reshape(t["shape"])

    def value(self, key: str) -> Any:
        if key not in self._values:
            self._values[key] = _onnxruntime().OrtValue.ortvalue_from_numpy(self.array(key))
        return self._values[key]

    @property
    def nbytes(self) -> int:
        return int(sum(int(t["length"]) for t in self.tensors.values()))


class OnnxRunner:
    """Runs path ``size`` through its graph; sessions open on first use and share weights."""

    def __init__(
        self,
        files: dict[int, Path],
        threads: int | None = None,
        shared: SharedWeights | None = None,
        uses: dict[int, dict[str, str]] | None = None,
    ):
        self.files = files
        self.threads = threads
        self.shared = shared
        self.uses = uses or {}
        self.session_config: dict[str, str] = {}  # applied to sessions opened afterwards
        self._sessions: dict[int, Any] = {}

    def session(self, size: int) -> Any:
        if size not in self._sessions:
            inits = None
            if self.shared is not None:
                inits = {name: self.shared.value(key) for name, key in self.uses.get(size, {}).items()}
            self._sessions[size] = ort_session(
                self.files[size], self.threads, inits, self.session_config
            )
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
        share_weights: bool = True,
    ):
        """``share_weights=False``: let onnxruntime optimise each path's graph freely (BN folded,
        NCHWc layout, pre-packed weights), which holds one transformed trunk per path."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        files, uses = {}, {}
        for e in manifest["paths"]:
            f = folder / e["file"]
            if not f.is_file():
                raise FileNotFoundError(f"{folder}: graph {e['file']} is missing")
            if e.get("sha256") and file_sha256(f) != e["sha256"]:
                raise ValueError(
                    f"{f}: checksum differs from {MANIFEST} (damaged or from another export)"
                )
            files[int(e["resolution"])] = f
            uses[int(e["resolution"])] = e.get("shared_initializers") or {}
        table = manifest.get("shared_weights")
        shared = SharedWeights(folder, table) if table and share_weights else None
        if isinstance(selector, dict):
            selector = BranchSelector.from_dict(selector)
        super().__init__(
            OnnxRunner(files, threads, shared, uses),
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
