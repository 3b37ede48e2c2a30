"""Open a trunk from wherever a user has one: a btnet model folder, a ``backbone.pth``, an ONNX file.

BTNet freezes its trunk, so adding branches means adapting a recogniser that already exists.
Public recognisers ship as arcface_torch ``backbone.pth`` files (weights only: no classifier,
no architecture name) or as ONNX graphs (insightface model packs). :func:`open_trunk` turns any
of the three into the same thing: an IResNet :class:`~btnet.models.Backbone` plus what a model
built on it must remember (where it came from, its input convention, how its shape was read).

None of the three readers executes code from the file: model folders are safetensors + JSON,
``.pth`` files go through ``torch.load(weights_only=True)``, ONNX files are parsed by ``onnx``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from btnet.io.atomic import file_sha256
from btnet.models import Backbone, build_backbone
from btnet.models.iresnet import IRESNET_LAYERS

PTH_SUFFIXES = (".pth", ".pt")
ONNX_SUFFIXES = (".onnx",)

#: What every btnet model takes (``btnet.data.transforms``) and what arcface_torch trains with.
BTNET_CONVENTION: dict[str, Any] = {
    "channels": "RGB",
    "layout": "NCHW",
    "mean": 127.5,
    "std": 127.5,
    "formula": "(x - 127.5) / 127.5 on 0..255 RGB pixels",
}


@dataclass
class Trunk:
    """A backbone ready to be a BTNet trunk, and what a model built on it should store."""

    backbone: Backbone
    kind: str  # "model" (btnet folder), "arcface-pth" or "onnx"
    source: Path
    input_convention: dict[str, Any]
    classifier: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical(self) -> int:
        """The face size the trunk was trained at (S in the paper)."""
        return int(self.backbone.input_size)

    @property
    def embedding_size(self) -> int:
        return int(self.backbone.embedding_size)

    def describe(self) -> str:
        """One line for logs: what was opened and how it will be fed."""
        b = self.backbone
        width = b.config.get("width", "?")
        return (f"{self.kind} trunk {self.source.name}: {b.arch} width {width}, "
                f"{self.canonical}x{self.canonical} -> {self.embedding_size}-d, "
                f"input {self.input_convention.get('formula', '?')} "
                f"({self.input_convention.get('source', 'btnet')})")

    def restore_batchnorm_statistics(self, batches: Any, *, described_as: str) -> list[str]:
        """Give the identity BatchNorms of an ONNX import real statistics (eval unchanged).

        Call it before training anything that runs the trunk's BatchNorms in train mode (e.g.
        per-resolution BatchNorm copies): see
        :func:`btnet.io.onnx_import.restore_batchnorm_statistics`. ``batches`` are normalised
        faces at the canonical size; ``described_as`` (e.g. "200 images of faces/") is
        recorded in ``meta`` with the count. A trunk without identity BatchNorms is unchanged.
        """
        from btnet.io.onnx_import import restore_batchnorm_statistics

        restored = restore_batchnorm_statistics(self.backbone, batches)
        if restored:
            self.meta["batchnorm_statistics"] = {"restored": len(restored), "from": described_as}
        return restored

    def provenance(self) -> dict[str, Any]:
        """JSON-able record for ``model.json`` ``meta.trunk_source`` of models built on it."""
        return {"kind": self.kind, "path": str(self.source.resolve()),
                "input_convention": self.input_convention, **self.meta}

    def save(self, folder: str | Path) -> Path:
        """Store the trunk as a btnet model folder (every command can then take it)."""
        from btnet.io.model_store import save_backbone

        name = self.meta.get("name") or self.source.stem
        return save_backbone(self.backbone, folder, classifier=self.classifier,
                             meta={"name": name, "trunk_source": self.provenance()})


VERIFY_TOLERANCE = 1e-3  # an import further than this from onnxruntime is refused


def open_trunk(source: str | Path, *, input_size: int | None = None, verify: bool = True
               ) -> Trunk:
    """Open ``source`` as a trunk: a btnet model folder, an arcface_torch ``.pth`` or an ``.onnx``.

    ``input_size`` overrides the canonical size where the file cannot state it (a ``.pth``
    stores only the flattened head, which fits every size from 16(f-1)+1 to 16f; 112 is read
    as the arcface_torch default). The backbone is returned in eval mode. An ONNX import is
    compared with onnxruntime on random faces (``verify``; recorded in ``meta``) and refused
    beyond :data:`VERIFY_TOLERANCE` on L2-normalised embeddings.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in ONNX_SUFFIXES:
        return _open_onnx(path, input_size, verify)
    if path.is_file() and path.suffix.lower() in PTH_SUFFIXES:
        return _open_pth(path, input_size)
    if path.is_dir():
        return _open_folder(path, input_size)
    if not path.exists():
        raise FileNotFoundError(f"no trunk at {path}")
    raise ValueError(
        f"{path}: not a trunk btnet can open; give a btnet model folder (model.json), an "
        f"arcface_torch backbone ({'/'.join(PTH_SUFFIXES)}) or an ONNX graph (.onnx)"
    )


# --------------------------------------------------------------------------- model folders


def model_folder(path: str | Path) -> Path:
    """A stored model folder, or a training output folder holding one in ``model/``."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / "model.json").is_file():
            return cand
    raise FileNotFoundError(f"{p}: no model.json here or in {p / 'model'} (not a btnet model folder)")


def _open_folder(path: Path, input_size: int | None) -> Trunk:
    from btnet.io.model_store import load_model

    folder = model_folder(path)
    stored = load_model(folder)
    backbone = stored.model.trunk if stored.kind == "btnet" else stored.model
    if input_size is not None and int(input_size) != backbone.input_size:
        raise ValueError(f"{folder}: the stored trunk is {backbone.input_size}x"
                         f"{backbone.input_size}, not {input_size}x{input_size}")
    convention = dict(stored.meta.get("trunk_source", {}).get("input_convention") or
                      {**BTNET_CONVENTION, "source": "btnet model"})
    meta = {"name": stored.meta.get("name") or folder.name, "model_kind": stored.kind,
            "train_set": stored.meta.get("train_set"),
            "fingerprint": _fingerprint(folder)}
    return Trunk(backbone.eval(), "model", folder, convention, stored.classifier, meta)


def _fingerprint(folder: Path) -> str | None:
    try:
        from btnet.io.fingerprint import model_fingerprint

        return model_fingerprint(folder)
    except Exception:  # a fingerprint is provenance, never a reason to refuse a trunk
        return None


# --------------------------------------------------------------------------- backbone.pth


_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.conv1\.weight$")


def iresnet_config_from_state(state: dict[str, torch.Tensor], input_size: int | None = None
                              ) -> dict[str, Any]:
    """Architecture of an arcface_torch IResNet state dict: depth, width, embedding, size.

    Depth is the number of blocks per stage, width the stem's channel count, the embedding the
    ``fc`` output; the canonical size is read from the flattened head (``fc`` in-features =
    8 * width * f * f with f = ceil(S / 16)).
    """
    missing = [k for k in ("conv1.weight", "fc.weight", "features.running_var") if k not in state]
    if missing:
        raise ValueError(f"not an IResNet state dict (no {', '.join(missing)}); btnet reads "
                         "arcface_torch IResNet checkpoints (r18/r34/r50/r100/r200, any width)")
    blocks = [0, 0, 0, 0]
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    arch = arch_for_layers(tuple(blocks))
    width = int(state["conv1.weight"].shape[0])
    emb, fc_in = (int(d) for d in state["fc.weight"].shape)
    size, how = canonical_from_head(fc_in, width, input_size)
    return {"arch": arch, "width": width, "embedding_size": emb, "input_size": size,
            "input_size_from": how}


def arch_for_layers(blocks: tuple[int, ...]) -> str:
    """``(3, 4, 14, 3)`` -> ``"iresnet50"``; a clear error for counts no IResNet has."""
    for name, layers in IRESNET_LAYERS.items():
        if tuple(layers) == tuple(blocks):
            return name
    known = ", ".join(f"{n[len('iresnet'):]}: {v}" for n, v in IRESNET_LAYERS.items())
    raise ValueError(f"blocks per stage {tuple(blocks)} match no IResNet depth ({known})")


def canonical_from_head(fc_in: int, width: int, input_size: int | None) -> tuple[int, str]:
    """Canonical size consistent with a head of ``fc_in`` inputs; ``(size, how it was found)``."""
    cells = fc_in / (8 * width)
    final = math.isqrt(int(cells)) if cells == int(cells) else 0
    if final < 1 or final * final != cells:
        raise ValueError(f"fc takes {fc_in} inputs, not 8 x width ({width}) x a square map")
    if input_size is not None:
        got = math.ceil(int(input_size) / 16)
        if got != final:
            raise ValueError(f"input size {input_size} gives a {got}x{got} final map, but the "
                             f"head was trained on {final}x{final} (sizes {16 * final - 15}.."
                             f"{16 * final})")
        return int(input_size), "given"
    return 16 * final, f"head: {final}x{final} final map -> {16 * final} (any of " \
                       f"{16 * final - 15}..{16 * final} fits; pass input_size to choose)"


def _open_pth(path: Path, input_size: int | None) -> Trunk:
    from btnet.io.model_store import read_arcface_state

    state = read_arcface_state(path)
    try:
        cfg = iresnet_config_from_state(state, input_size)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    backbone = build_backbone(cfg["arch"], input_size=cfg["input_size"], width=cfg["width"],
                              embedding_size=cfg["embedding_size"])
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not fit a {cfg['arch']} of width {cfg['width']} "
                         f"({str(exc).splitlines()[0]})") from exc
    convention = {**BTNET_CONVENTION, "source": "assumed: arcface_torch trains every backbone "
                  "on this normalisation; a .pth cannot state it"}
    meta = {"name": path.stem, "sha256": file_sha256(path), "detected": cfg}
    return Trunk(backbone.eval(), "arcface-pth", path, convention, None, meta)


# --------------------------------------------------------------------------- ONNX


def _open_onnx(path: Path, input_size: int | None, verify: bool) -> Trunk:
    from btnet.io.onnx_import import OnnxImportError, load_onnx_backbone, verify_against_onnxruntime

    backbone, info = load_onnx_backbone(path, input_size=input_size)
    convention = dict(info["input_convention"])
    meta = {"name": path.stem, **{k: v for k, v in info.items() if k != "input_convention"}}
    if verify:
        diff = verify_against_onnxruntime(path, backbone, info)
        if diff is not None and diff > VERIFY_TOLERANCE:
            raise OnnxImportError(f"{path}: the import differs from onnxruntime by {diff:.2e} "
                                  "on normalised embeddings; the graph has something the "
                                  "importer does not model")
        meta["verified_vs_onnxruntime"] = ("onnxruntime not installed" if diff is None else
                                           {"max_abs_diff_normalised": diff,
                                            "faces": "2 random at the canonical size"})
    return Trunk(backbone, "onnx", path, convention, None, meta)
