"""``add_branches(trunk, images, out)``: give a recogniser you already have branches for tiny
faces, from unlabelled images.

This is the library behind ``btnet branch add``. The trunk is a btnet model folder, an
arcface_torch ``backbone.pth`` or an ONNX file (:mod:`btnet.training.trunk_source`); it stays
frozen, and the branches learn label-free (``branch.objective: distill``,
:mod:`btnet.training.labelfree`), so a folder of face crops is all the data needed.

``out`` becomes a stored model folder (``model.json`` and safetensors, what ``btnet embed``,
``export onnx``, ``gallery`` and ``eval`` take). The run itself lives in ``out/training/``
(resolved config, metrics, checkpoint): calling again with the same arguments after an
interruption continues from the last checkpoint and reaches the same weights as an
uninterrupted run; calling it on a finished folder returns at once.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btnet.io.model_store import MODEL_JSON
from btnet.training.config import ConfigError

log = logging.getLogger(__name__)

TRAINING_DIR = "training"


@dataclass
class BranchAddResult:
    model: Path  # the stored model folder (``out``)
    steps: int
    metrics: dict = field(default_factory=dict)
    resumed: bool = False


def branch_add_config(
    trunk: str | Path,
    images: str,
    *,
    resolutions: tuple[int, ...] | list[int] = (7, 14, 28),
    canonical: int | None = None,
    epochs: float = 4.0,
    max_steps: int = 0,
    batch_size: int = 128,
    lr: float = 0.1,
    embed_loss: str = "mse",
    distill_weight: float = 0.5,
    embed_weight: float = 1.0,
    trunk_scale: str = "unit",
    degrade: str = "",
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    workers: int = 0,
    progress: bool = True,
    checkpoint_every: int = 100,
    name: str = "branches",
) -> dict[str, Any]:
    """The training config ``add_branches`` runs (a plain dict, as ``btnet train`` reads).

    ``model.*`` is read from the trunk itself, so nothing about the architecture has to be
    typed; ``canonical`` is needed only for a ``.pth`` whose head does not tell it.
    """
    from btnet.training.trunk_source import open_trunk_source

    source = open_trunk_source(trunk, canonical)
    bb = source.backbone
    model = {"arch": bb.arch, "input_size": bb.input_size, "embedding_size": bb.embedding_size}
    if getattr(bb, "width", None):
        model["width"] = int(bb.width)
    return {
        "recipe": "branch",
        "name": name,
        "model": model,
        "data": {"train": str(images), "num_workers": int(workers)},
        "optim": {"lr": float(lr)},
        "schedule": {"name": "poly", "warmup_epochs": min(1.0, float(epochs) / 8)},
        "train": {"epochs": float(epochs), "max_steps": int(max_steps),
                  "batch_size": int(batch_size), "seed": int(seed), "device": device,
                  "num_threads": int(threads), "progress": bool(progress),
                  "ckpt_every": int(checkpoint_every), "log_every": 20},
        "branch": {"trunk": str(trunk), "resolutions": [int(r) for r in resolutions],
                   "objective": "distill", "embed_loss": embed_loss,
                   "distill_weight": float(distill_weight),
                   "embed_distill_weight": float(embed_weight),
                   "trunk_scale": trunk_scale, "degrade": degrade},
    }


def add_branches(
    trunk: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    keep_checkpoint: bool = False,
    **options: Any,
) -> BranchAddResult:
    """Train label-free branches for ``trunk`` on ``images`` and store the BTNet in ``out``.

    ``options`` are those of :func:`branch_add_config` (resolutions, epochs, lr, ...). An
    ``out`` that holds an unfinished run of the *same* config is continued; one that holds a
    different run, or anything that is not ours, is refused rather than overwritten.
    """
    from btnet.training.api import train
    from btnet.training.config import config_from_dict
    from btnet.training.loop import checkpoint_step

    out = Path(out)
    run_dir = out / TRAINING_DIR
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not run_dir.is_dir():
        raise ValueError(f"{out} is not empty and holds no branch-add run: choose another --out")
    cfg = config_from_dict(branch_add_config(trunk, str(images), **options))
    if run_dir.is_dir():
        _check_same_run(run_dir, cfg)
    if (out / MODEL_JSON).is_file() and (run_dir / "result.json").is_file():
        log.info("%s already holds the finished model", out)
        done = train(cfg, output_dir=run_dir, resume="auto")  # reads result.json, trains nothing
        return BranchAddResult(out, done.steps, done.metrics, resumed=True)
    resumed = checkpoint_step(run_dir) is not None
    if resumed:
        log.info("continuing the interrupted run in %s from step %d", run_dir,
                 checkpoint_step(run_dir))
    result = train(cfg, output_dir=run_dir, resume="auto")
    _publish(Path(result.model_path), out)
    if not keep_checkpoint:  # the optimiser state is twice the model; the run is finished
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return BranchAddResult(out, result.steps, result.metrics, resumed)


def _check_same_run(run_dir: Path, cfg) -> None:
    """Refuse to continue a run whose resolved config differs (other trunk, data, epochs...)."""
    import yaml

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    from btnet.training.config import Config

    saved = yaml.safe_load(saved_path.read_text()) or {}
    now = cfg.to_dict()
    # a setting newer than the saved run is compared with its default, which is what that run
    # had (new settings default to the former behaviour), so upgrading btnet keeps runs resumable
    default = Config().to_dict()

    def was(sec: str, k: str):
        return saved.get(sec, {}).get(k, default[sec].get(k))

    differs = [f"{sec}.{k}" for sec in ("model", "branch", "optim", "schedule")
               for k in now[sec] if was(sec, k) != now[sec][k]]
    differs += [f"data.{k}" for k in ("train", "sampler", "flip") if was("data", k) != now["data"][k]]
    differs += [f"train.{k}" for k in ("epochs", "max_steps", "batch_size", "seed")
                if was("train", k) != now["train"][k]]
    if differs:
        raise ConfigError(f"{run_dir.parent} holds a run with other settings ({', '.join(differs)}); "
                          "use another --out, or repeat the original command to continue it")


def _publish(model_dir: Path, out: Path) -> None:
    """Copy the stored model up into ``out``; ``model.json`` last, so a half-copied folder is
    never a loadable model."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    for p in files:
        if p.name != MODEL_JSON:
            shutil.copy2(p, out / p.name)
    shutil.copy2(model_dir / MODEL_JSON, out / (MODEL_JSON + ".tmp"))
    (out / (MODEL_JSON + ".tmp")).replace(out / MODEL_JSON)
