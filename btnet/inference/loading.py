"""Build an :class:`~btnet.inference.encoders.Encoder` from what a user names on the command line.

Specs:
- ``DIR``: a stored model folder (a BTNet or a plain backbone);
- ``mm:7=DIR,14=DIR,28=DIR[,112=DIR]``: phi_mm, one stored model per resolution (each a
  one-path BTNet or a backbone of that input size);
- ``NAME=SPEC`` names the encoder in reports, e.g. ``phi_hr=runs/hr/model``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from btnet.inference.encoders import (
    Encoder,
    MultiResolutionEncoder,
    PerResolutionEncoder,
    UpsamplingEncoder,
)
from btnet.io.model_store import load_model
from btnet.models import BranchSelector, BTNet


def load_encoder(
    spec: str | Path,
    *,
    selector: BranchSelector | None = None,
    device: str | torch.device = "cpu",
    name: str | None = None,
) -> Encoder:
    spec = str(spec)
    if "=" in spec.split(":", 1)[0] and not spec.startswith("mm:"):
        name, spec = spec.split("=", 1)
    if spec.startswith("mm:"):
        return _load_per_resolution(spec[3:], selector, device, name or "phi_mm")
    stored = load_model(spec)
    label = name or stored.meta.get("name") or Path(spec).name
    if stored.kind == "btnet":
        return MultiResolutionEncoder(
            stored.model, selector or stored.selector, name=label, device=device
        )
    return UpsamplingEncoder(stored.model, name=label, device=device)


def _load_per_resolution(
    members: str, selector: BranchSelector | None, device: str | torch.device, name: str
) -> PerResolutionEncoder:
    models: dict[int, nn.Module] = {}
    embedding_size = None
    for item in filter(None, members.split(",")):
        if "=" not in item:
            raise ValueError(f"mm: members are RES=DIR, got {item!r}")
        res, folder = item.split("=", 1)
        r = int(res)
        stored = load_model(folder)
        model = stored.model
        if isinstance(model, BTNet):
            if r == model.canonical or r in model.resolutions:
                module: nn.Module = model.path(r)
            else:
                raise ValueError(f"{folder}: has no path for resolution {r} (paths {list(model.input_sizes)})")
        else:
            if model.input_size != r:
                raise ValueError(f"{folder}: input size {model.input_size}, listed for {r}")
            module = model
        emb = model.embedding_size
        if embedding_size not in (None, emb):
            raise ValueError("phi_mm members must share one embedding size")
        embedding_size = emb
        models[r] = module
    if not models:
        raise ValueError("mm: needs at least one RES=DIR member")
    return PerResolutionEncoder(
        models, selector, embedding_size=int(embedding_size), name=name, device=device
    )
