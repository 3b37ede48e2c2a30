"""Training configuration: a dataclass schema filled from YAML files and ``--set`` overrides.

The schema *is* the documentation of every option: a key the schema does not know fails at
once with the list of valid keys, so a typo can never silently train the wrong model. A YAML
file may start from another with ``base: other.yaml`` (path relative to the file).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RECIPES = {
    "trunk": "a trunk (TNet) or phi_hr / phi_mr baseline at canonical size S; data.sampler "
    "picks hr, mr_v1, mr_v2, mr_v3 or fixed:<r>",
    "mm": "phi_mm: one model per resolution r, from scratch on r x r images, with the "
    "architecture of BTNet's path r (Table 3's 'scratch' row)",
    "branch": "BTNet branches on a trained trunk (default: the phi_mr v1 trunk), with Table 3's "
    "switches: pretrained init, BCT, fixed trunk, branch / embedding distillation; "
    "branch.objective=distill trains them from images alone (no labels, no classifier)",
}

# What a branch learns from (``branch.objective``).
BRANCH_OBJECTIVES = {
    "bct": "margin (influence) loss through a classifier: the trunk's own under BCT "
    "(branch.bct), a fresh one otherwise; needs identity labels; plus branch.distill_weight x "
    "branch distillation",
    "distill": "label-free: branch.distill_weight x branch distillation plus "
    "branch.embed_distill_weight x an embedding term (branch.embed_loss) towards the trunk's "
    "embedding of the S-pixel face; no classifier, labels ignored, flat image folders accepted",
}
EMBED_LOSSES = ("cosine", "mse")
TRUNK_SCALES = ("stored", "unit")


@dataclass
class ModelConfig:
    arch: str = "iresnet50"
    input_size: int = 112  # canonical size S
    width: int = 64  # base channel count of the first stage
    embedding_size: int = 512
    sync_bn: bool = True  # under DDP, BatchNorm statistics over the global batch
    # trunk recipe: start from these weights (a stored model folder, a training output folder
    # or an arcface_torch backbone.pth) instead of a random init; the stored classifier is
    # reused when it has as many classes as the training set (warm start / fine-tuning)
    init_from: str = ""


@dataclass
class DataConfig:
    train: str = "builtin"  # image folder, insightface .rec prefix or builtin[:...]
    sampler: str = "mr_v1"  # trunk recipe: hr, mr_v1, mr_v2, mr_v3, fixed:<r>
    flip: bool = True  # random horizontal flip
    num_workers: int = 0


@dataclass
class LossConfig:
    name: str = "arcface"  # arcface, cosface, curricularface
    s: float | None = None  # None: the published scale (64)
    m: float | None = None  # None: the published margin (0.5 / 0.4 / 0.5)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (with momentum) or adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 0.0  # max global grad norm; 0 disables


@dataclass
class ScheduleConfig:
    name: str = "poly"  # poly, cosine or constant, after the warm-up
    warmup_steps: int = 0  # takes precedence over warmup_epochs when > 0
    warmup_epochs: float = 0.0
    power: float = 2.0  # polynomial decay exponent
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: float = 20.0
    max_steps: int = 0  # > 0: stop after this many optimiser steps instead of epochs
    batch_size: int = 128  # global: summed over processes and accumulation micro-batches
    accum_steps: int = 1  # gradient accumulation micro-batches per optimiser step
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU), off, fp16, bf16
    dtype: str = "float32"  # weights/activations; float64 for exactness checks (saved as float32)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    num_threads: int = 0  # torch CPU threads; 0 leaves torch's default
    log_every: int = 20  # optimiser steps between metric records
    ckpt_every: int = 500  # optimiser steps between checkpoints (0: only at the end)
    progress: bool = True  # tqdm progress bar on rank 0
    tensorboard: bool = False  # also write TensorBoard scalars (if installed)
    channels_last: bool = True  # NHWC activations: oneDNN's conv backward is 2-3x faster on CPU


@dataclass
class BranchConfig:
    trunk: str = ""  # trained trunk (.safetensors from the trunk recipe, or its output folder)
    classifier: str = ""  # trunk's classifier; default: found next to the trunk
    resolutions: list[int] = field(default_factory=lambda: [7, 14, 28])
    pretrained: bool = True  # initialise each branch from the trunk's layers
    bct: bool = True  # influence loss through the trunk's frozen classifier
    fixed_trunk: bool = True  # shared weights frozen; per-resolution BN trained
    distill_weight: float = 0.5  # lambda of the branch distillation MSE (0 disables)
    # embedding-level distillation weight; None: 0 under objective bct, 1 under distill
    embed_distill_weight: float | None = None
    objective: str = "bct"  # bct (needs labels) or distill (label-free); see BRANCH_OBJECTIVES
    # embedding term: mse (raw embeddings; measured better at 7 px, docs/training.md) or cosine
    embed_loss: str = "mse"
    # surveillance degradation of the r-pixel training faces (btnet.data.degradation spec,
    # e.g. "surveillance" or "blur=0.3:1,p=0.5"); "" trains on clean down-sampling only
    degrade: str = ""
    # where the trunk's per-channel scales sit when branches start training: "stored" (as the
    # trunk file has them) or "unit" (each conv rescaled to unit output std on training faces,
    # the same function: btnet.models.conv_scale); "unit" makes a folder and its ONNX export
    # (which folds BatchNorm) train alike
    trunk_scale: str = "stored"
    # resolutions whose path gets its own trainable copy of the shared tail although the trunk
    # is fixed (all of them under fixed_trunk: false): more capacity for, e.g., 7-pixel faces,
    # at the cost of storing that tail per path; one not in branch.resolutions has no path to
    # untie (so --set branch.resolutions=[14] works on a config that unties 7)
    untie: list[int] = field(default_factory=list)
    separate_runs: bool = False  # one run per resolution instead of all in one
    coupling_offset: int = 0  # couple k units deeper than the first r x r unit (Figure 7)


@dataclass
class MMConfig:
    resolutions: list[int] = field(default_factory=lambda: [7, 14, 28])


@dataclass
class EvalConfig:
    sets: list[str] = field(default_factory=list)  # verification sets (specs)
    # settings r1&r2 as btnet.evaluation.verification.parse_settings reads them (S: the
    # canonical size), e.g. ["S&S", "S&7", "14&14"]; "default" is Table 1's seven
    pairs: list[str] = field(default_factory=lambda: ["S&S"])
    every: int = 0  # optimiser steps between verifications (0: only at the end)
    batch_size: int = 64


@dataclass
class Config:
    recipe: str = "trunk"
    name: str = ""
    output_dir: str = ""  # default: runs/<name or recipe>
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    branch: BranchConfig = field(default_factory=BranchConfig)
    mm: MMConfig = field(default_factory=MMConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def run_name(self) -> str:
        return self.name or self.recipe

    def out_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.run_name()}")


class ConfigError(ValueError):
    """A configuration the schema rejects (unknown key, wrong type, bad value)."""


def _valid_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {_valid_keys(tp)}, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        if tp is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    valid = _valid_keys(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in valid:
            raise ConfigError(
                f"unknown config key {where!r}; valid keys"
                f"{' in ' + prefix if prefix else ''}: {', '.join(valid)}"
            )
        kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def merge_dicts(base: dict, over: dict) -> dict:
    """``over`` laid on ``base`` key by key, nested mappings merged, as a new dict that shares
    nothing with either: how a YAML's ``base:``, ``--set`` overrides and a study's per-model
    settings combine."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base:' chain")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark is not None:
            problem += f"; {context} at line {cmark.line + 1}"
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if data is None:
        # An empty file would otherwise train the full default model into runs/trunk.
        raise ConfigError(f"{path}: the config file is empty; start from one in configs/ "
                          "(e.g. configs/cpu/trunk_mr_v1.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    base = data.pop("base", None)
    if base:
        data = merge_dicts(_read_yaml(path.parent / base, (*seen, path.resolve())), data)
    return data


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["optim.lr=0.01", "branch.resolutions=[14]"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


# (key, lowest, highest, lowest included): numbers outside fail before any step is taken.
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("model.input_size", 1, 4096, True),
    ("model.width", 1, 4096, True),
    ("model.embedding_size", 1, 65536, True),
    ("loss.s", 0, 1e4, False),
    ("loss.m", 0, 3.2, True),
    ("optim.lr", 0, 100, True),  # 0: weights stay put (BN statistics still update)
    ("optim.momentum", 0, 1, True),
    ("optim.weight_decay", 0, 1, True),
    ("optim.betas", 0, 1, True),
    ("optim.eps", 0, 1, False),
    ("optim.grad_clip", 0, float("inf"), True),
    ("schedule.warmup_steps", 0, float("inf"), True),
    ("schedule.warmup_epochs", 0, float("inf"), True),
    ("schedule.power", 0, 100, True),
    ("schedule.min_lr", 0, 100, True),
    ("train.epochs", 0, 1e6, True),
    ("train.max_steps", 0, float("inf"), True),
    ("train.num_threads", 0, 4096, True),
    ("train.log_every", 1, float("inf"), True),
    ("train.ckpt_every", 0, float("inf"), True),
    ("branch.distill_weight", 0, 1e6, True),
    ("branch.embed_distill_weight", 0, 1e6, True),
    ("branch.coupling_offset", 0, 1000, True),
    ("branch.resolutions", 1, 4096, True),
    ("branch.untie", 1, 4096, True),
    ("mm.resolutions", 1, 4096, True),
    ("eval.every", 0, float("inf"), True),
    ("eval.batch_size", 1, float("inf"), True),
    ("data.num_workers", 0, 1024, True),
)


def _check_ranges(cfg: Config) -> None:
    """Refuse out-of-range numbers before training (non-finite ones fail in ``_coerce``)."""
    for key, lo, hi, lo_ok in _RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            if v < lo or (v == lo and not lo_ok) or v > hi:
                low = f"{'>=' if lo_ok else '>'} {lo:g}"
                high = f" and <= {hi:g}" if math.isfinite(hi) else ""
                raise ConfigError(f"{key} must be {low}{high}, got {v!r}")


def validate(cfg: Config) -> Config:
    """Value checks the types alone cannot express."""
    _check_ranges(cfg)
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
    if cfg.train.batch_size < 1 or cfg.train.accum_steps < 1:
        raise ConfigError("train.batch_size and train.accum_steps must be >= 1")
    amp = str(cfg.train.amp).lower()  # YAML reads a bare off / on as a boolean
    cfg.train.amp = {"false": "off", "no": "off", "true": "auto", "on": "auto"}.get(amp, amp)
    if cfg.train.amp not in ("auto", "off", "fp16", "bf16"):
        raise ConfigError(f"train.amp must be auto, off, fp16 or bf16, not {cfg.train.amp!r}")
    if cfg.train.dtype not in ("float32", "float64"):
        raise ConfigError(f"train.dtype must be float32 or float64, not {cfg.train.dtype!r}")
    if cfg.train.dtype == "float64" and cfg.train.amp in ("fp16", "bf16"):
        raise ConfigError(f"train.dtype=float64 and train.amp={cfg.train.amp} contradict; "
                          "set train.amp=off")
    if cfg.optim.name not in ("sgd", "adamw"):
        raise ConfigError(f"optim.name must be sgd or adamw, not {cfg.optim.name!r}")
    if cfg.schedule.name not in ("poly", "cosine", "constant"):
        raise ConfigError(f"schedule.name must be poly, cosine or constant, not {cfg.schedule.name!r}")
    if cfg.train.max_steps <= 0 and cfg.train.epochs <= 0:
        raise ConfigError("set train.epochs or train.max_steps to a positive value")
    if cfg.model.init_from and cfg.recipe != "trunk":
        raise ConfigError(f"model.init_from applies to the trunk recipe only, not {cfg.recipe!r} "
                          "(branches start from branch.trunk)")
    if cfg.recipe == "branch" and not cfg.branch.trunk:
        raise ConfigError("the branch recipe needs branch.trunk (a trained trunk file or folder)")
    _validate_branch(cfg.branch)
    return cfg


def _validate_branch(bc: BranchConfig) -> None:
    if bc.objective not in BRANCH_OBJECTIVES:
        raise ConfigError(f"branch.objective must be one of {', '.join(BRANCH_OBJECTIVES)}, "
                          f"not {bc.objective!r}")
    if bc.embed_loss not in EMBED_LOSSES:
        raise ConfigError(f"branch.embed_loss must be one of {', '.join(EMBED_LOSSES)}, "
                          f"not {bc.embed_loss!r}")
    if bc.trunk_scale not in TRUNK_SCALES:
        raise ConfigError(f"branch.trunk_scale must be one of {', '.join(TRUNK_SCALES)}, "
                          f"not {bc.trunk_scale!r}")
    try:
        from btnet.data.degradation import parse_degradation

        parse_degradation(bc.degrade or None)
    except ValueError as exc:
        raise ConfigError(f"branch.degrade: {exc}") from None
    if bc.embed_distill_weight is None:
        bc.embed_distill_weight = 1.0 if bc.objective == "distill" else 0.0
    if bc.distill_weight < 0 or bc.embed_distill_weight < 0:
        raise ConfigError("branch.distill_weight and branch.embed_distill_weight must be >= 0")
    if bc.objective == "distill" and bc.distill_weight == 0 and bc.embed_distill_weight == 0:
        raise ConfigError("branch.objective=distill with branch.distill_weight=0 and "
                          "branch.embed_distill_weight=0 has nothing to learn from; set one > 0")


def config_from_dict(data: dict) -> Config:
    return validate(_build(Config, data))


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict | None = None
) -> Config:
    """Read a YAML config (optional), apply ``--set`` style overrides, validate."""
    data = _read_yaml(Path(path)) if path else {}
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    return config_from_dict(merge_dicts(data, extra))
