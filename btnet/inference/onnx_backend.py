"""onnxruntime backend: serve a ``btnet export onnx`` folder without PyTorch.

The folder's ``manifest.json`` names one graph per path, the routing policy, the embedding size
and the fingerprint of the source model. The trunk's weights, which every path runs, are stored
once (``weights.bin``). On first use each path's graph is optimised by onnxruntime for this CPU
(BatchNorm kept apart from the trunk's convs), and the optimised tensors are pooled by content,
so the trunk's re-laid-out weights are held once for all paths while every path runs the fast
kernels. :class:`OnnxEncoder` is the shared
:class:`~btnet.inference.encoding.RoutedEncoder` over an :class:`OnnxRunner`; nothing here
imports PyTorch or ``btnet.models`` internals.
"""

from __future__ import annotations

import hashlib
import tempfile
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


# Folding a path's BatchNorm into the trunk's conv / matmul would give every path its own copy of
# the trunk's weights; with it off, onnxruntime's other rewrites (NCHWc re-layout, fusions) turn
# the trunk's tensors into the same bytes in every path's optimised graph.
BN_FOLDING = ("ConvBNFusion", "MatMulBNFusion")
EXTERNAL_MIN_BYTES = 1024  # optimised tensors this big go to the side file, to be pooled


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
    optimised: bool = False,
) -> Any:
    """A CPU onnxruntime session (``threads``: intra-op threads; None = onnxruntime's default).

    ``initializers`` (name -> OrtValue) replace the graph's own tensors of those names without
    copying them: how several path graphs share one copy of the trunk's weights. ``config``:
    extra session config entries (e.g. ``session.set_denormal_as_zero``). ``optimised``: the
    graph was already optimised (:func:`optimise_graph`); run it as it is.
    """
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if optimised:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    if initializers:
        for name, value in initializers.items():
            opts.add_initializer(name, value)
        # pre-packing would give each session a private re-packed copy of a shared matrix
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(file), sess_options=opts, providers=["CPUExecutionProvider"])


def optimise_graph(file: Path, out_dir: Path) -> Path:
    """Let onnxruntime optimise ``file`` for this CPU (BatchNorm left unfolded) into ``out_dir``.

    The result (``optimised.onnx`` with its tensors in ``optimised.bin``) uses this machine's
    blocked (NCHWc) layouts, so it is written to a temporary folder and never shipped.
    """
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the "hardware specific" warning: that is why it stays local
    graph = out_dir / "optimised.onnx"
    opts.optimized_model_filepath = str(graph)
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", "optimised.bin"
    )
    opts.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", str(EXTERNAL_MIN_BYTES)
    )
    ort.InferenceSession(
        str(file), sess_options=opts, providers=["CPUExecutionProvider"],
        disabled_optimizers=list(BN_FOLDING),
    )
    return graph


class TensorPool:
    """Tensors of several optimised path graphs, each distinct content held once.

    Keys are the bytes' SHA-256 with dtype and shape, so sharing needs no tensor names: the
    trunk's tensors, re-laid out identically for every path, are pooled; a path's own
    BatchNorm and branch tensors are not. The arrays back the OrtValues (no copy), so the pool
    must live as long as the sessions using it (the runner keeps it).
    """

    def __init__(self) -> None:
        self._tensors: dict[str, tuple[np.ndarray, Any]] = {}
        self.requested_bytes = 0  # what the sessions would hold without pooling

    def value(self, raw: bytes, dtype: str, shape: list[int]) -> Any:
        self.requested_bytes += len(raw)
        h = hashlib.sha256(raw)
        h.update(f"{dtype}:{shape}".encode())
        key = h.hexdigest()
        if key not in self._tensors:
            array = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
            self._tensors[key] = (array, _onnxruntime().OrtValue.ortvalue_from_numpy(array))
        return self._tensors[key][1]

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a, _ in self._tensors.values()))

    def initializers(self, graph_file: Path) -> dict[str, Any]:
        """OrtValues from the pool for every external tensor of ``graph_file``."""
        try:
            import onnx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("shared ONNX sessions need onnx: pip install 'btnet[onnx]'") from exc
        graph = onnx.load(str(graph_file), load_external_data=False).graph
        out: dict[str, Any] = {}
        handles: dict[str, Any] = {}
        try:
            for t in graph.initializer:
                if t.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                info = {e.key: e.value for e in t.external_data}
                if info["location"] not in handles:
                    handles[info["location"]] = open(graph_file.parent / info["location"], "rb")
                fh = handles[info["location"]]
                fh.seek(int(info.get("offset", 0)))
                raw = fh.read(int(info["length"]))
                out[t.name] = self.value(raw, NUMPY_DTYPES[t.data_type], list(t.dims))
        finally:
            for fh in handles.values():
                fh.close()
        return out


class OnnxRunner:
    """Runs path ``size`` through its graph; sessions open on first use.

    With ``share`` (the default), each path's graph is first optimised by onnxruntime for this
    CPU (:func:`optimise_graph`), then opened as it is with its tensors taken from one
    :class:`TensorPool`: every path runs onnxruntime's fast kernels, and the trunk's
    (re-laid-out) weights are in memory once. Without it, every session optimises its own graph
    and holds its own transformed trunk.
    """

    def __init__(self, files: dict[int, Path], threads: int | None = None, share: bool = True):
        self.files = files
        self.threads = threads
        self.shared = TensorPool() if share else None
        self.session_config: dict[str, str] = {}  # applied to sessions opened afterwards
        self._sessions: dict[int, Any] = {}

    def session(self, size: int) -> Any:
        if size not in self._sessions:
            if self.shared is None:
                session = ort_session(self.files[size], self.threads, None, self.session_config)
            else:
                with tempfile.TemporaryDirectory(prefix="btnet-ort-") as tmp:
                    graph = optimise_graph(self.files[size], Path(tmp))
                    inits = self.shared.initializers(graph)
                    session = ort_session(
                        graph, self.threads, inits, self.session_config, optimised=True
                    )
            self._sessions[size] = session
        return self._sessions[size]

    def run(self, size: int, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session(size).run(None, {INPUT_NAME: x})[0]


def check_shared_weights(folder: Path, table: dict | None) -> None:
    """Fail on opening, not with wrong embeddings later, if ``weights.bin`` is missing or damaged."""
    if not table:
        return
    path = folder / table["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: shared weights {table['file']} are missing")
    if table.get("sha256") and file_sha256(path) != table["sha256"]:
        raise ValueError(f"{path}: checksum differs from {MANIFEST} (damaged or from another export)")


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
        """``share_weights=False``: every path's session optimises and holds its own copy of
        the trunk (BN folded into it, pre-packed): as fast, about four times the memory."""
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
        check_shared_weights(folder, manifest.get("shared_weights"))
        if isinstance(selector, dict):
            selector = BranchSelector.from_dict(selector)
        super().__init__(
            OnnxRunner(files, threads, share_weights),
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
