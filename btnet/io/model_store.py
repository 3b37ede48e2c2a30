"""Stored models: a folder of safetensors files plus one small JSON, never a pickle.

Layout of a stored model folder::

    model.json                  format, kind, backbone config, resolutions, coupling units, ...
    trunk.safetensors           the backbone (arcface_torch key names)
    path_r7.safetensors         BTNet only: branch r7 (``branch.*``) and its own layers (``shared.*``)
    classifier.safetensors      optional: the training classifier (needed for BCT branch training)

A BTNet stores the trunk once and, per resolution, only what that path owns: its branch and its
BatchNorms, or the whole shared tail where the path was trained untied. Loading rebuilds the
modules from the JSON and fills them strictly, so outputs are bit-identical and no code from the
file ever runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from btnet.io.atomic import atomic_write_text, atomic_write_with, read_format_json
from btnet.models import Backbone, BranchSelector, BTNet, backbone_from_config, build_backbone

FORMAT = "btnet-model"
VERSION = 1
MODEL_JSON = "model.json"


@dataclass
class StoredModel:
    """What :func:`load_model` returns: the module plus everything stored beside it."""

    kind: str  # "backbone" or "btnet"
    model: Backbone | BTNet
    meta: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, torch.Tensor] | None = None
    selector: BranchSelector | None = None
    path: Path | None = None


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_with(path, lambda tmp: save_file(clean, str(tmp)))


def _write_json(folder: Path, data: dict[str, Any]) -> None:
    atomic_write_text(folder / MODEL_JSON, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_backbone(
    backbone: Backbone,
    folder: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    classifier: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Store a plain recogniser (a trunk, a phi_hr / phi_mr baseline)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(folder / "trunk.safetensors", backbone.state_dict())
    if classifier is not None:
        _save_tensors(folder / "classifier.safetensors", classifier)
    _write_json(
        folder,
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": "backbone",
            "backbone": backbone.config,
            "meta": meta or {},
            "has_classifier": classifier is not None,
        },
    )
    return folder


def save_btnet(
    model: BTNet,
    folder: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    classifier: dict[str, torch.Tensor] | None = None,
    selector: BranchSelector | None = None,
) -> Path:
    """Store a BTNet as the trunk once plus each path's own tensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(folder / "trunk.safetensors", model.trunk.state_dict())
    paths = {}
    for r in model.resolutions:
        state = model.path_state(r)
        name = f"path_r{r}.safetensors"
        _save_tensors(folder / name, state)
        paths[str(r)] = {
            "file": name,
            "coupling_unit": model.coupling[r],
            "coupling_name": model.coupling_name(r),
            "untied": r in model.untied,
            "stored_parameters": int(sum(v.numel() for k, v in state.items() if _is_param(k))),
        }
    if classifier is not None:
        _save_tensors(folder / "classifier.safetensors", classifier)
    selector = selector or BranchSelector.from_rule(model.input_sizes, "min", "near")
    _write_json(
        folder,
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": "btnet",
            "backbone": model.trunk.config,
            "canonical": model.canonical,
            "resolutions": list(model.resolutions),
            "paths": paths,
            "selector": selector.to_dict(),
            "meta": meta or {},
            "has_classifier": classifier is not None,
        },
    )
    return folder


def _is_param(key: str) -> bool:
    """Whether a ``path_state`` key is a learnable parameter (not a BN running statistic)."""
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


_REQUIRED = {"backbone": ("kind", "backbone"), "btnet": ("kind", "backbone", "resolutions", "paths")}


def read_model_json(folder: str | Path) -> dict[str, Any]:
    """The checked ``model.json`` of a stored model: a missing key is named with the file."""
    path = Path(folder) / MODEL_JSON
    data = read_format_json(path, FORMAT, VERSION, "a stored btnet model")
    kind = data.get("kind")
    if kind not in _REQUIRED:
        raise ValueError(f"{path}: unknown or missing model kind {kind!r} (backbone or btnet)")
    for key in _REQUIRED[kind]:
        if key not in data:
            raise ValueError(f"{path}: lacks the key {key!r} a {kind} model needs; the file "
                             "is damaged (re-save or re-export the model)")
    if not isinstance(data["backbone"], dict):
        raise ValueError(f"{path}: 'backbone' must be an object, got {data['backbone']!r}")
    return data


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"missing model file {path}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: tensor {key!r} holds NaN or infinite values; the model "
                             "file is damaged (restore it or re-export the model)")
    return tensors


def load_model(folder: str | Path) -> StoredModel:
    """Load a stored backbone or BTNet (eval mode)."""
    folder = Path(folder)
    data = read_model_json(folder)
    trunk = backbone_from_config(data["backbone"])
    _load_strict(trunk, _load_tensors(folder / "trunk.safetensors"), folder / "trunk.safetensors")
    classifier = None
    if data.get("has_classifier"):
        classifier = _load_tensors(folder / "classifier.safetensors")
    if data["kind"] == "backbone":
        return StoredModel("backbone", trunk.eval(), data.get("meta", {}), classifier, None, folder)
    if data["kind"] != "btnet":
        raise ValueError(f"{folder}: unknown model kind {data['kind']!r}")
    couplings = {int(r): int(info["coupling_unit"]) for r, info in data["paths"].items()}
    model = BTNet(trunk, data["resolutions"], couplings=couplings)
    for key, info in data["paths"].items():
        r = int(key)
        if info.get("untied"):
            model.untie(r)
        file = folder / info["file"]
        try:
            model.load_path_state(r, _load_tensors(file))
        except RuntimeError as exc:
            raise ValueError(f"{file}: does not fit path {r} ({exc})") from exc
    selector = BranchSelector.from_dict(data["selector"]) if "selector" in data else None
    return StoredModel("btnet", model.eval(), data.get("meta", {}), classifier, selector, folder)


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: does not fit the architecture in {MODEL_JSON} ({exc})") from exc


def read_arcface_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an arcface_torch ``backbone.pth`` (``module.`` prefixes removed).

    ``weights_only=True`` makes torch refuse anything but tensors and containers, so a malicious
    checkpoint cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a loadable weights-only PyTorch checkpoint ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_arcface_backbone(
    path: str | Path, arch: str = "iresnet50", *, input_size: int = 112, embedding_size: int = 512
) -> Backbone:
    """Load an arcface_torch ``backbone.pth`` (a plain state dict) with ``strict=True``."""
    state = read_arcface_state(path)
    backbone = build_backbone(arch, input_size=input_size, embedding_size=embedding_size)
    _load_strict(backbone, state, Path(path))
    return backbone.eval()
