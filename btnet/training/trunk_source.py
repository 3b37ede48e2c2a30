"""A trunk for branch training from wherever a user has one: a btnet model folder, a training
output folder, an arcface_torch ``backbone.pth`` (IResNet of any depth and width) or an ONNX
file, all read by :func:`btnet.io.trunks.open_trunk`.

Why a separate module: branch training only needs "a frozen backbone and, if it has one, its
classifier", plus calibration batches for an ONNX import's folded BatchNorms; where that backbone
came from should not leak into the recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from btnet.io.trunks import PTH_SUFFIXES
from btnet.models.backbone import Backbone


@dataclass
class TrunkSource:
    """A loaded trunk: the backbone (eval mode), its classifier if stored, and where it came from."""

    backbone: Backbone
    classifier: dict[str, torch.Tensor] | None
    path: Path
    kind: str  # "folder", "pth" or "onnx"
    meta: dict[str, Any] = field(default_factory=dict)


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
                      calibration=None, trunk_scale: str = "stored") -> TrunkSource:
    """Load a trunk from a model folder, a training output folder, a ``backbone.pth`` or an
    ``.onnx`` file (``input_size``: the canonical size where the file cannot tell).

    ``calibration``: a callable returning batches of faces (:func:`calibration_batches`); an
    ONNX import's identity BatchNorms (folded by the exporter) get their statistics from them,
    so that per-resolution BatchNorm copies can train. ``trunk_scale="unit"`` rescales every
    convolution of any trunk to unit output std on those faces instead
    (:func:`btnet.models.conv_scale.unit_output_scale`; the function is unchanged, the split of
    each channel's scale between conv and BatchNorm, which an ONNX export discards and which
    sets how fast copied branches train, becomes the same for every source). Every kind of
    source is read by :func:`btnet.io.trunks.open_trunk`; this adds the training-side
    calibration.
    """
    from btnet.io.trunks import open_trunk

    if not is_trunk_file(source):  # the recipe's message for a missing trunk folder
        from btnet.training.recipes import resolve_model_folder

        source = resolve_model_folder(source)
    trunk = open_trunk(source, input_size=input_size)
    if trunk_scale == "unit":
        if calibration is None:
            raise ValueError("trunk scale 'unit' measures the trunk on training faces: pass "
                             "calibration (load_trunk does when given the dataset)")
        from btnet.models.conv_scale import unit_output_scale

        batches = calibration()
        rescaled = unit_output_scale(trunk.backbone, batches)
        trunk.meta["trunk_scale"] = {"unit": len(rescaled),
                                     "faces": sum(len(b) for b in batches)}
    elif trunk.kind == "onnx" and calibration is not None:
        trunk.restore_batchnorm_statistics(calibration(), described_as="training images")
    kind = {"model": "folder", "arcface-pth": "pth"}.get(trunk.kind, trunk.kind)
    return TrunkSource(trunk.backbone.eval(), trunk.classifier, Path(trunk.source), kind,
                       {"trunk_source": trunk.provenance()})


def is_trunk_file(source: str | Path) -> bool:
    """Whether ``source`` names a trunk file (``.pth``/``.pt``/``.onnx``) rather than a folder."""
    p = Path(source)
    return p.is_file() and p.suffix in (*PTH_SUFFIXES, ".onnx")
