"""Model fingerprints: which embedding space a vector belongs to.

A gallery enrolled with one model is meaningless to another, even one of the same architecture
and embedding size, so galleries and ONNX exports record a fingerprint of the model they came
from. It hashes only what determines the embedding: the architecture description in
``model.json`` and the weight files. The routing policy (``selector``), free-form ``meta`` and the
training classifier are left out, so re-saving a model with another branch-selection policy or
new notes keeps its galleries valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from btnet.io.atomic import file_sha256

_EMBEDDING_KEYS = ("format", "kind", "backbone", "canonical", "resolutions", "paths")


def model_fingerprint(folder: str | Path) -> str:
    """``sha256:<hex>`` over a stored model's architecture and weights (see module doc)."""
    from btnet.io.model_store import MODEL_JSON, read_model_json  # torch: only for model folders

    folder = Path(folder)
    data = read_model_json(folder)
    h = hashlib.sha256()
    arch = {k: data[k] for k in _EMBEDDING_KEYS if k in data}
    h.update(json.dumps(arch, sort_keys=True).encode("utf-8"))
    files = ["trunk.safetensors"]
    if data.get("kind") == "btnet":
        files += [info["file"] for _, info in sorted(data["paths"].items(), key=lambda kv: int(kv[0]))]
    for name in files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: {MODEL_JSON} lists {name}, which is missing")
        h.update(name.encode("utf-8"))
        h.update(file_sha256(path).encode("ascii"))
    return f"sha256:{h.hexdigest()}"


def combine_fingerprints(parts: dict[str, str]) -> str:
    """One fingerprint for an encoder made of several stored models (phi_mm: one per size)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8"))
    return f"sha256:{h.hexdigest()}"


def checkpoint_fingerprint(path: str | Path, config: dict[str, Any]) -> str:
    """A foreign checkpoint (arcface_torch ``backbone.pth``) read as the architecture ``config``."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8"))
    h.update(file_sha256(Path(path)).encode("ascii"))
    return f"sha256:{h.hexdigest()}"
