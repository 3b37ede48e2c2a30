"""A trunk for branch training from wherever a user has one: a btnet model folder, a training
output folder, or an arcface_torch ``backbone.pth`` (IResNet of any depth and width).

Why a separate module: branch training only needs "a frozen backbone and, if it has one, its
classifier"; where that backbone came from should not leak into the recipes. ONNX trunks are
read by :mod:`btnet.io` where that reader exists (``open_trunk``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from btnet.models.backbone import Backbone

PTH_SUFFIXES = (".pth", ".pt")


@dataclass
class TrunkSource:
    """A loaded trunk: the backbone (eval mode), its classifier if stored, and where it came from."""

    backbone: Backbone
    classifier: dict[str, torch.Tensor] | None
    path: Path
    kind: str  # "folder", "pth" or "onnx"
    meta: dict[str, Any] = field(default_factory=dict)


def iresnet_config_from_state(state: dict[str, torch.Tensor],
                              input_size: int | None = None) -> dict[str, Any]:
    """Depth, width, embedding size (and canonical size) of an arcface_torch IResNet state dict.

    The canonical size is only determined up to the head's spatial size s (the flattened ``fc``
    input is 8 w s^2, and S in 16(s-1)+1 .. 16s all give s); s = 7 is taken as arcface_torch's
    112, anything else needs ``input_size``.
    """
    from btnet.models.iresnet import IRESNET_LAYERS

    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ValueError("not an IResNet state dict (no conv1.weight / fc.weight)")
    blocks = [0, 0, 0, 0]
    for key in state:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            i = int(m.group(1)) - 1
            blocks[i] = max(blocks[i], int(m.group(2)) + 1)
    arch = next((name for name, layers in IRESNET_LAYERS.items() if tuple(layers) == tuple(blocks)),
                None)
    if arch is None:
        raise ValueError(f"IResNet with blocks per stage {blocks} is none of "
                         f"{', '.join(IRESNET_LAYERS)}")
    width = int(state["conv1.weight"].shape[0])
    embedding, flat = (int(d) for d in state["fc.weight"].shape)
    s = math.isqrt(flat // (8 * width))
    if 8 * width * s * s != flat:
        raise ValueError(f"fc takes {flat} inputs, not 8 x width {width} x s^2 for any s")
    lo, hi = 16 * (s - 1) + 1, 16 * s
    if input_size is None:
        if s != 7:
            raise ValueError(f"the trunk's head sees {s}x{s} maps, so its canonical size is one of "
                             f"{lo}..{hi}: say which (--canonical / model.input_size)")
        input_size = 112
    if not lo <= int(input_size) <= hi:
        raise ValueError(f"canonical size {input_size} does not fit this trunk (its head sees "
                         f"{s}x{s} maps: sizes {lo}..{hi})")
    return {"arch": arch, "input_size": int(input_size), "width": width,
            "embedding_size": embedding}


def calibration_batches(dataset, canonical: int, count: int = 256, batch_size: int = 64,
                        seed: int = 0) -> list[torch.Tensor]:
    """Up to ``count`` training faces at the canonical size, normalised as btnet feeds them
    ((x - 127.5) / 127.5, N x 3 x S x S), drawn by seed: what an ONNX import's folded
    BatchNorms are given statistics from before per-resolution copies train."""
    import numpy as np

    from btnet.data.resolution import FixedSampler, MultiResolutionTransform

    to_s = MultiResolutionTransform(FixedSampler(canonical), canonical)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))[:count]
    faces = [to_s(dataset[int(i)][0], rng) for i in order]
    out = []
    for start in range(0, len(faces), batch_size):
        x = torch.from_numpy(np.stack(faces[start:start + batch_size])).permute(0, 3, 1, 2)
        out.append(x.float().div(127.5).sub(1.0))
    return out


def open_trunk_source(source: str | Path, input_size: int | None = None,
                      calibration=None) -> TrunkSource:
    """Load a trunk from a model folder, a training output folder, a ``backbone.pth`` or an
    ``.onnx`` file (``input_size``: the canonical size where the file cannot tell).

    ``calibration``: a callable returning batches of faces (:func:`calibration_batches`); an
    ONNX import's identity BatchNorms (folded by the exporter) get their statistics from them,
    so that per-resolution BatchNorm copies can train. Where :mod:`btnet.io.trunks` exists
    (the ONNX importer), every kind of source is opened through it.
    """
    from btnet.io.model_store import load_model, read_arcface_state
    from btnet.models import backbone_from_config

    try:
        from btnet.io.trunks import open_trunk
    except ImportError:
        open_trunk = None
    if open_trunk is not None:
        if not is_trunk_file(source):  # the recipe's message for a missing trunk folder
            from btnet.training.recipes import resolve_model_folder

            source = resolve_model_folder(source)
        trunk = open_trunk(source, input_size=input_size)
        if trunk.kind == "onnx" and calibration is not None:
            trunk.restore_batchnorm_statistics(calibration(), described_as="training images")
        kind = {"model": "folder", "arcface-pth": "pth"}.get(trunk.kind, trunk.kind)
        return TrunkSource(trunk.backbone.eval(), trunk.classifier, Path(trunk.source), kind,
                           {"trunk_source": trunk.provenance()})
    path = Path(source)
    if path.is_file() and path.suffix in PTH_SUFFIXES:
        state = read_arcface_state(path)
        config = iresnet_config_from_state(state, input_size)
        backbone = backbone_from_config(config)
        try:
            backbone.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: does not load into a {config} IResNet "
                             f"({str(exc).splitlines()[0]})") from exc
        return TrunkSource(backbone.eval(), None, path, "pth", {"source": str(path)})
    if path.is_file() and path.suffix == ".onnx":
        raise ValueError(f"{path}: this btnet build cannot import ONNX trunks "
                         "(btnet.io.trunks is missing)")
    from btnet.training.recipes import resolve_model_folder

    folder = resolve_model_folder(path)
    stored = load_model(folder)
    trunk = stored.model.trunk if stored.kind == "btnet" else stored.model
    if input_size is not None and int(input_size) != trunk.input_size:
        raise ValueError(f"{folder}: the stored trunk's canonical size is {trunk.input_size}, "
                         f"not {input_size}")
    return TrunkSource(trunk, stored.classifier, folder, "folder", dict(stored.meta))


def is_trunk_file(source: str | Path) -> bool:
    """Whether ``source`` names a trunk file (``.pth``/``.pt``/``.onnx``) rather than a folder."""
    p = Path(source)
    return p.is_file() and p.suffix in (*PTH_SUFFIXES, ".onnx")
