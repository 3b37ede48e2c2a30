"""One loader: an :class:`~btnet.inference.encoding.RoutedEncoder` from whatever a user has.

Sources (``btnet.load`` and every CLI command that takes a model go through :func:`load_encoder`):

- ``DIR``: a stored model folder (a BTNet with its stored branch selector, or a plain
  backbone), or a training output folder holding one in ``model/``;
- an ONNX export folder (``manifest.json``): served by onnxruntime without importing PyTorch;
- ``backbone.pth`` or an arcface_torch ``.onnx`` graph: a recogniser trained elsewhere, read by
  :func:`btnet.io.trunks.open_trunk` (weights-only, architecture read from the tensors) and
  served like phi_hr;
- ``mm:7=DIR,14=DIR,28=DIR[,112=DIR]``: phi_mm, one stored model per resolution (each a
  one-path BTNet or a backbone of that input size);
- ``NAME=SOURCE`` names the encoder in reports, e.g. ``phi_hr=runs/hr/model``.

PyTorch is imported only for the sources that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from btnet.inference.encoding import RoutedEncoder
from btnet.inference.onnx_backend import OnnxEncoder, is_onnx_export
from btnet.models.selection import BranchSelector

if TYPE_CHECKING:
    import torch

TRUNK_FILE_SUFFIXES = (".pth", ".pt", ".onnx")  # read by btnet.io.trunks.open_trunk


def split_name(spec: str) -> tuple[str | None, str]:
    """``NAME=SOURCE`` -> (NAME, SOURCE); an ``mm:`` spec or a plain source has no name."""
    head = spec.split(":", 1)[0]
    if "=" in head and not spec.startswith("mm:"):
        name, source = spec.split("=", 1)
        return name, source
    return None, spec


def find_model_folder(path: str | Path) -> Path | None:
    """A stored model folder, or a training output folder holding one in ``model/``."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / "model.json").is_file():
            return cand
    return None


def load_encoder(
    spec: str | Path,
    *,
    selector: BranchSelector | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
    threads: int | None = None,
    share_weights: bool = True,
    input_size: int | None = None,
) -> RoutedEncoder:
    """Open ``spec`` (see the module doc) as an encoder whose ``.selector`` is the stored one.

    ``selector`` overrides the stored routing policy; ``threads`` and ``share_weights`` apply to
    onnxruntime (:class:`~btnet.inference.onnx_backend.OnnxEncoder`); ``input_size`` is the
    canonical size of a ``backbone.pth`` or arcface ``.onnx`` where the file cannot state it.
    """
    label, source = split_name(str(spec))
    label = name or label
    if source.startswith("mm:"):
        return _load_per_resolution(source, selector, device, label or "phi_mm")
    path = Path(source)
    if is_onnx_export(path):
        return OnnxEncoder(
            path, selector=selector, threads=threads, name=label, share_weights=share_weights
        )
    if path.is_file() and path.suffix.lower() in TRUNK_FILE_SUFFIXES:
        return _load_trunk_file(path, device, label, input_size)
    folder = find_model_folder(path)
    if folder is None:
        raise FileNotFoundError(
            f"no model at {source} (expected a stored model folder with model.json, a training "
            "output folder, an ONNX export folder with manifest.json, or an arcface_torch .pth "
            "or .onnx)"
        )
    return _load_stored(folder, selector, device, label)


def _load_stored(
    folder: Path, selector: BranchSelector | None, device: Any, label: str | None
) -> RoutedEncoder:
    from btnet.inference.encoders import MultiResolutionEncoder, UpsamplingEncoder
    from btnet.io.fingerprint import model_fingerprint
    from btnet.io.model_store import load_model

    stored = load_model(folder)
    label = label or stored.meta.get("name") or folder.name
    if stored.kind == "btnet":
        enc: RoutedEncoder = MultiResolutionEncoder(
            stored.model, selector or stored.selector, name=label, device=device
        )
    else:
        if selector is not None and tuple(selector.paths) != (stored.model.input_size,):
            raise ValueError(f"{folder}: a plain model has one path; a selector cannot route it")
        enc = UpsamplingEncoder(stored.model, name=label, device=device)
    enc.source = str(folder)
    enc._fingerprint = lambda: model_fingerprint(folder)
    return enc


def _load_trunk_file(
    path: Path, device: Any, label: str | None, input_size: int | None
) -> RoutedEncoder:
    """A recogniser file from elsewhere (:func:`btnet.io.trunks.open_trunk`) as phi_hr."""
    from btnet.inference.encoders import UpsamplingEncoder
    from btnet.io.fingerprint import checkpoint_fingerprint
    from btnet.io.trunks import open_trunk

    trunk = open_trunk(path, input_size=input_size)
    enc = UpsamplingEncoder(trunk.backbone, name=label or path.stem, device=device)
    enc.source = str(path)
    enc._fingerprint = lambda: checkpoint_fingerprint(path, trunk.backbone.config)
    return enc


def _load_per_resolution(
    spec: str, selector: BranchSelector | None, device: Any, name: str
) -> RoutedEncoder:
    from btnet.inference.encoders import PerResolutionEncoder
    from btnet.io.fingerprint import combine_fingerprints, model_fingerprint
    from btnet.io.model_store import load_model
    from btnet.models import BTNet

    models: dict[int, Any] = {}
    folders: dict[str, str] = {}
    embedding_size = None
    for item in filter(None, spec[3:].split(",")):
        if "=" not in item:
            raise ValueError(f"mm: members are RES=DIR, got {item!r}")
        res, folder = item.split("=", 1)
        r = int(res)
        stored = load_model(folder)
        model = stored.model
        if isinstance(model, BTNet):
            if r == model.canonical or r in model.resolutions:
                module = model.path(r)
            else:
                raise ValueError(
                    f"{folder}: has no path for resolution {r} (paths {list(model.input_sizes)})"
                )
        else:
            if model.input_size != r:
                raise ValueError(f"{folder}: input size {model.input_size}, listed for {r}")
            module = model
        emb = model.embedding_size
        if embedding_size not in (None, emb):
            raise ValueError("phi_mm members must share one embedding size")
        embedding_size = emb
        models[r] = module
        folders[res] = folder
    if not models:
        raise ValueError("mm: needs at least one RES=DIR member")
    enc = PerResolutionEncoder(
        models, selector, embedding_size=int(embedding_size), name=name, device=device
    )
    enc.source = spec
    enc._fingerprint = lambda: combine_fingerprints(
        {r: model_fingerprint(d) for r, d in folders.items()}
    )
    return enc
