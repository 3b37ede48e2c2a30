"""The paper's training recipes as (task module, data, saver) bundles the generic loop runs.

* ``trunk``: a backbone at canonical size S on multi-resolution data (phi_hr with sampler
  ``hr``, phi_mr v1/v2/v3 with ``mr_v1``/``mr_v2``/``mr_v3``): down-sample to r, up-sample to S.
* ``mm``: phi_mm, for one resolution r: a BTNet path r (branch + its own copy of the tail),
  everything trainable and randomly initialised, trained on r x r images. Stored as a one-path
  BTNet, which is what ``btnet.inference`` loads for ``mm:7=DIR,...``.
* ``branch``: BTNet branches on a trained trunk with Table 3's switches.

Everything that can be wrong about a recipe (missing trunk, resolution the trunk cannot couple,
canonical size or identities that do not match) is checked in :func:`build_recipe`, i.e.
before the first training step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from btnet.data.resolution import FixedSampler, MultiResolutionTransform, downsample, make_sampler
from btnet.losses import MarginHead, branch_distillation, build_margin_loss, embedding_loss
from btnet.models import BTNet, build_backbone
from btnet.models.backbone import Backbone
from btnet.training.config import Config, ConfigError
from btnet.training.specs import with_defaults

log = logging.getLogger(__name__)

Sample = dict[str, np.ndarray]


# --------------------------------------------------------------------------- task modules


class ClassifierTask(nn.Module):
    """Margin loss on the embedding of a backbone, or of BTNet path ``resolution``."""

    def __init__(self, model: nn.Module, head: MarginHead, resolution: int | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.resolution = resolution

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution is None:
            return self.model(x)
        return self.model.path(self.resolution)(x)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        emb = self.embed(batch["x"])
        loss = self.head(emb, batch["label"])
        return {"loss": loss, "cls": loss.detach()}


class BranchTask(nn.Module):
    """BTNet branch training: margin (influence) loss on path r plus distillation towards the trunk.

    The trunk is the teacher: its coupling-unit features and embeddings of the S-pixel image
    are computed without gradients, and the trunk stays in eval mode whatever mode the task is
    in, so its running BatchNorm statistics are never touched. Path r's own BatchNorms follow
    the task's mode; a tied path shares only the trunk's weights, which have no mode.
    """

    def __init__(
        self,
        model: BTNet,
        classifier: nn.Module,
        loss_name: str,
        s: float | None,
        m: float | None,
        resolutions: list[int],
        distill_weight: float,
        embed_distill_weight: float,
        embed_loss: str = "mse",
    ):
        super().__init__()
        self.model = model
        self.resolutions = [int(r) for r in resolutions]
        # One classifier (the trunk's, under BCT), one loss state per resolution.
        self.heads = nn.ModuleDict()
        for r in self.resolutions:
            head = MarginHead(classifier.embedding_size, classifier.num_classes,
                              build_margin_loss(loss_name, s, m))
            head.classifier = classifier
            self.heads[str(r)] = head
        self.distill_weight = float(distill_weight)
        self.embed_distill_weight = float(embed_distill_weight)
        self.embed_loss = embedding_loss(embed_loss)

    def train(self, mode: bool = True) -> BranchTask:
        super().train(mode)
        self.model.trunk.eval()  # the teacher
        return self

    @torch.no_grad()
    def _teacher(self, x_s: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        return self.model.trunk_targets(x_s, self.resolutions, features=self.distill_weight > 0,
                                        embedding=self.embed_distill_weight > 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats, t_emb = self._teacher(batch["x"])
        labels = batch["label"]
        total = torch.zeros((), device=labels.device)
        out: dict[str, torch.Tensor] = {}
        for r in self.resolutions:
            path = self.model.branch_path(r)
            branch_out = path.branch(batch[f"x{r}"])
            emb = path.tail(branch_out)
            cls = self.heads[str(r)](emb, labels)
            loss_r = cls
            out[f"cls{r}"] = cls.detach()
            if self.distill_weight > 0:
                dist = branch_distillation(branch_out, feats[r])
                loss_r = loss_r + self.distill_weight * dist
                out[f"distill{r}"] = dist.detach()
            if t_emb is not None:
                edist = self.embed_loss(emb, t_emb)
                loss_r = loss_r + self.embed_distill_weight * edist
                out[f"edistill{r}"] = edist.detach()
            total = total + loss_r
        out["loss"] = total
        return out


# --------------------------------------------------------------------------- data


def open_training_set(spec: str, canonical: int, allow_unlabelled: bool = False):
    """A :class:`~btnet.data.base.FaceDataset` from a spec, via :mod:`btnet.data.training_sets`.

    Built-in faces (``builtin[:split][,ids=..,per_id=..,seed=..]``) are rendered at the
    canonical size unless the spec names a ``size``. ``allow_unlabelled``: a flat folder of
    images is accepted (label-free objectives only, see :func:`needs_labels`).
    """
    from btnet.data.synthetic import is_builtin_spec
    from btnet.data.training_sets import open_training_set as _open

    if is_builtin_spec(spec):
        spec = with_defaults(spec, size=canonical)
    return _open(spec, allow_unlabelled=allow_unlabelled)


def needs_labels(cfg: Config) -> bool:
    """Whether a config's objective reads identity labels (all but label-free branches)."""
    return not (cfg.recipe == "branch" and cfg.branch.objective == "distill")


def _flip(img: np.ndarray, rng: np.random.Generator, enabled: bool) -> np.ndarray:
    if enabled and rng.random() < 0.5:
        return np.ascontiguousarray(img[:, ::-1])
    return img


def make_trunk_sample(sampler_name: str, canonical: int, flip: bool, restore: bool = True):
    """``f(image, rng) -> {"x": ...}``: down to a sampled r, then (if restore) back up to S."""
    transform = MultiResolutionTransform(make_sampler(sampler_name, canonical), canonical, restore)

    def fn(image: np.ndarray, rng: np.random.Generator) -> Sample:
        out = transform(image, rng)
        return {"x": _flip(out, rng, flip)}

    return fn


def make_branch_sample(canonical: int, resolutions: list[int], flip: bool, degrade: str = ""):
    """``f(image, rng) -> {"x": S x S face, "x7": its 7 x 7 version, ...}`` (same flip).

    ``degrade`` (a :func:`~btnet.data.degradation.parse_degradation` spec) blurs, adds noise to
    and re-compresses each small face as a camera would; the teacher's S-pixel face stays
    clean, so a branch learns to map a degraded r-pixel face to what the clean face holds.
    """
    from btnet.data.degradation import parse_degradation

    to_canonical = MultiResolutionTransform(FixedSampler(canonical), canonical)
    degradation = parse_degradation(degrade or None)

    def fn(image: np.ndarray, rng: np.random.Generator) -> Sample:
        hr = _flip(to_canonical(image, rng), rng, flip)
        sample = {"x": hr}
        for r in resolutions:
            small = downsample(hr, r)
            sample[f"x{r}"] = small if degradation is None else degradation(small, rng)
        return sample

    return fn


# --------------------------------------------------------------------------- recipes


@dataclass
class Recipe:
    """What the loop needs: the module to train, its data, and how to store the result."""

    name: str
    task: nn.Module
    dataset: Any
    make_sample: Callable[[np.ndarray, np.random.Generator], Sample]
    save: Callable[[Path], Path]  # writes the trained model under a folder, returns its path
    encoder: Callable[[], Any]  # a btnet.inference encoder over the current weights
    eval_resolutions: list[int] | None = None  # restrict verification settings (phi_mm)


def _backbone(cfg: Config) -> Backbone:
    kwargs: dict[str, Any] = {"input_size": cfg.model.input_size,
                              "embedding_size": cfg.model.embedding_size}
    if cfg.model.arch.startswith(("iresnet", "r")) and cfg.model.width > 0:
        kwargs["width"] = cfg.model.width
    return build_backbone(cfg.model.arch, **kwargs)


def _freeze_all_but(module: nn.Module, trainable: list[nn.Parameter]) -> None:
    keep = {id(p) for p in trainable}
    for p in module.parameters():
        p.requires_grad_(id(p) in keep)


def _classifier_state(head_classifier: nn.Module) -> dict[str, torch.Tensor]:
    return {"weight": head_classifier.weight.detach().cpu().clone()}


def _meta(cfg: Config, **extra: Any) -> dict:
    return {"name": cfg.run_name(), "recipe": cfg.recipe, "loss": cfg.loss.name,
            "sampler": cfg.data.sampler, "train_set": cfg.data.train, **extra}


def branch_meta(cfg: Config, trunk: Path | str, embed_distill_weight: float | None,
                **extra: Any) -> dict:
    """``model.json`` meta of branches of either objective: the branch switches they trained with."""
    bc = cfg.branch
    return _meta(cfg, trunk=str(trunk), pretrained=bc.pretrained, fixed_trunk=bc.fixed_trunk,
                 distill_weight=bc.distill_weight, embed_distill_weight=embed_distill_weight,
                 embed_loss=bc.embed_loss, degrade=bc.degrade, trunk_scale=bc.trunk_scale,
                 untie=list(bc.untie), **extra)


def warm_start(cfg: Config, backbone: Backbone, head: MarginHead) -> str:
    """Load ``model.init_from`` into ``backbone`` (strict) and, if it fits, into ``head``.

    Why: at small scale a trunk trained from scratch on multi-resolution data settles on a
    weak resolution-invariant solution; starting it from a trained high-resolution model keeps
    what that model learned (docs/results.md). Returns a one-line account for the log.
    """
    from btnet.io.model_store import load_model, read_arcface_state

    source = Path(cfg.model.init_from)
    classifier = None
    if source.is_file() and source.suffix in (".pth", ".pt"):
        state = read_arcface_state(source)  # checked against model.* by the strict load below
    else:
        stored = load_model(resolve_model_folder(source))
        trunk = stored.model.trunk if stored.kind == "btnet" else stored.model
        state = trunk.state_dict()
        # class i means the same person only on the same training set
        if stored.meta.get("train_set") == cfg.data.train:
            classifier = stored.classifier
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"model.init_from={source} does not fit model.* of this config "
                          f"({str(exc).splitlines()[0]})") from exc
    weight = None if classifier is None else classifier.get("weight")
    if weight is not None and tuple(weight.shape) == tuple(head.classifier.weight.shape):
        with torch.no_grad():
            head.classifier.weight.copy_(weight)
        return f"trunk and classifier initialised from {source}"
    return (f"trunk initialised from {source}; classifier starts fresh (none stored for "
            "this training set and class count)")


def build_trunk_recipe(cfg: Config, dataset) -> Recipe:
    from btnet.inference.encoders import UpsamplingEncoder
    from btnet.io.model_store import save_backbone

    make_sampler(cfg.data.sampler, cfg.model.input_size)  # fail early on a bad name
    backbone = _backbone(cfg)
    head = MarginHead(backbone.embedding_size, dataset.num_classes,
                      build_margin_loss(cfg.loss.name, cfg.loss.s, cfg.loss.m))
    init = warm_start(cfg, backbone, head) if cfg.model.init_from else "random init"
    log.info("trunk %s: %s", cfg.run_name(), init)
    task = ClassifierTask(backbone, head)

    def save(folder: Path) -> Path:
        return save_backbone(backbone, folder, meta=_meta(cfg, num_classes=dataset.num_classes,
                                                          init=init),
                             classifier=_classifier_state(head.classifier))

    return Recipe(
        "trunk", task, dataset,
        make_trunk_sample(cfg.data.sampler, cfg.model.input_size, cfg.data.flip),
        save, lambda: UpsamplingEncoder(backbone, name=cfg.run_name()),
    )


def build_mm_recipe(cfg: Config, dataset, r: int) -> Recipe:
    from btnet.inference.encoders import MultiResolutionEncoder
    from btnet.io.model_store import save_btnet
    from btnet.models import BranchSelector

    model = BTNet(_backbone(cfg), resolutions=(r,), pretrained_branches=False)
    model.untie(r)
    _freeze_all_but(model, model.path_parameters(r))
    head = MarginHead(model.embedding_size, dataset.num_classes,
                      build_margin_loss(cfg.loss.name, cfg.loss.s, cfg.loss.m))
    task = ClassifierTask(model, head, resolution=r)
    selector = BranchSelector.from_rule((r,), "min", "near")

    def save(folder: Path) -> Path:
        return save_btnet(model, folder, meta=_meta(cfg, resolution=r, phi_mm=True,
                                                    num_classes=dataset.num_classes),
                          classifier=_classifier_state(head.classifier), selector=selector)

    return Recipe(
        f"mm{r}", task, dataset,
        make_trunk_sample(f"fixed:{r}", cfg.model.input_size, cfg.data.flip, restore=False),
        save, lambda: MultiResolutionEncoder(model, selector, name=f"{cfg.run_name()}_r{r}"),
        eval_resolutions=[r],
    )


def resolve_model_folder(path: str | Path) -> Path:
    """A stored model folder, or a training output folder holding one in ``model/``."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / "model.json").is_file():
            return cand
    raise FileNotFoundError(
        f"no trained trunk at {p} (expected a stored model folder with model.json, or a "
        "training output folder with model/model.json: train it first with the trunk recipe)"
    )


def load_trunk(cfg: Config, dataset=None) -> tuple[Backbone, dict[str, torch.Tensor] | None, Path]:
    """Load ``branch.trunk`` (a model folder, a backbone.pth or an .onnx file) and check it
    fits the config (before any training). ``dataset`` calibrates an ONNX import's folded
    BatchNorms (see :func:`btnet.training.trunk_source.open_trunk_source`)."""
    from safetensors.torch import load_file

    from btnet.training.trunk_source import calibration_batches, is_trunk_file, open_trunk_source

    file = is_trunk_file(cfg.branch.trunk)  # a file cannot always tell its canonical size
    calibration = None if dataset is None else (
        lambda: calibration_batches(dataset, cfg.model.input_size, seed=cfg.train.seed))
    source = open_trunk_source(cfg.branch.trunk, cfg.model.input_size if file else None,
                               calibration, trunk_scale=cfg.branch.trunk_scale)
    trunk, classifier, folder = source.backbone, source.classifier, source.path
    if cfg.branch.classifier:
        cpath = Path(cfg.branch.classifier)
        if not cpath.is_file():
            raise FileNotFoundError(f"branch.classifier not found: {cpath}")
        classifier = load_file(str(cpath))
    problems = []
    if trunk.input_size != cfg.model.input_size:
        problems.append(f"the trunk's canonical size is {trunk.input_size}, the config's "
                        f"model.input_size is {cfg.model.input_size}")
    if trunk.arch != cfg.model.arch:
        problems.append(f"the trunk is a {trunk.arch}, the config says model.arch={cfg.model.arch}")
    if problems:
        raise ConfigError(f"trunk {folder} does not fit this config: " + "; ".join(problems)
                          + " (set model.* to the trunk's values)")
    return trunk, classifier, folder


def check_branch_pairing(cfg: Config, dataset, resolutions: list[int]):
    """Load the trunk and check every branch can couple into it (and BCT can use its classifier).

    Returns ``(trunk, classifier weight or None, trunk folder)``.
    """
    bc = cfg.branch
    trunk, stored_cls, folder = load_trunk(cfg, dataset)
    geometry = trunk.coupling_geometry()
    possible = geometry.available_resolutions()
    bad = [r for r in resolutions if r not in possible]
    if bad:
        raise ConfigError(
            f"the trunk {trunk.arch} at S={trunk.input_size} has no unit with a {bad[0]}x{bad[0]} "
            f"output, so no branch can couple there; branch.resolutions may use {possible}"
        )
    for r in resolutions:
        units = geometry.candidates(r)
        if not 0 <= bc.coupling_offset < len(units):
            raise ConfigError(
                f"branch.coupling_offset={bc.coupling_offset}: the trunk has {len(units)} unit(s) "
                f"with a {r}x{r} output, so the offset must be in [0, {len(units) - 1}]"
            )
    weight = None
    if bc.bct and bc.objective == "bct":  # label-free objectives use no classifier
        if stored_cls is None or "weight" not in stored_cls:
            raise FileNotFoundError(
                f"branch.bct needs the trunk's classifier, but {folder} stores none "
                "(set branch.classifier, or branch.bct=false)"
            )
        weight = stored_cls["weight"]
        if tuple(weight.shape) != (dataset.num_classes, trunk.embedding_size):
            raise ConfigError(
                f"the trunk's classifier has {weight.shape[0]} classes x {weight.shape[1]} dims, "
                f"the training set {dataset.num_classes} identities and the trunk "
                f"{trunk.embedding_size} dims: BCT needs the trunk's own training identities"
            )
    return trunk, weight, folder


def trainable_paths(model: BTNet, bc, resolutions: list[int]) -> list[nn.Parameter]:
    """Untie the paths that get their own tail (all under ``fixed_trunk: false``, else those of
    ``branch.untie``), freeze the trunk where it is fixed, and return what trains: each path's
    branch, own BatchNorms and (untied) tail copy."""
    untie = resolutions if not bc.fixed_trunk else [r for r in bc.untie if r in resolutions]
    for r in untie:
        model.untie(r)  # before freezing: the copies must stay trainable
    if bc.fixed_trunk:
        model.freeze_shared()
    return [p for r in resolutions for p in model.path_parameters(r)]


def build_branch_recipe(cfg: Config, dataset, resolutions: list[int]) -> Recipe:
    from btnet.inference.encoders import MultiResolutionEncoder
    from btnet.io.model_store import save_btnet
    from btnet.losses import NormalizedClassifier

    bc = cfg.branch
    trunk, weight, folder = check_branch_pairing(cfg, dataset, resolutions)
    geometry = trunk.coupling_geometry()
    couplings = {r: geometry.candidates(r)[bc.coupling_offset] for r in resolutions}
    model = BTNet(trunk, resolutions, pretrained_branches=bc.pretrained, couplings=couplings)
    classifier = NormalizedClassifier(trunk.embedding_size, dataset.num_classes)
    if weight is not None:
        classifier.weight.data.copy_(weight)
    trainable = trainable_paths(model, bc, resolutions)
    if not bc.bct:
        trainable += list(classifier.parameters())
    task = BranchTask(model, classifier, cfg.loss.name, cfg.loss.s, cfg.loss.m, resolutions,
                      bc.distill_weight, bc.embed_distill_weight or 0.0, bc.embed_loss)
    _freeze_all_but(task, trainable)

    def save(out: Path) -> Path:
        meta = branch_meta(cfg, folder, bc.embed_distill_weight, bct=bc.bct,
                           num_classes=dataset.num_classes)
        return save_btnet(model, out, meta=meta, classifier=_classifier_state(classifier))

    return Recipe(
        "branch" + ("" if len(resolutions) > 1 else str(resolutions[0])), task, dataset,
        make_branch_sample(cfg.model.input_size, resolutions, cfg.data.flip, bc.degrade),
        save, lambda: MultiResolutionEncoder(model, name=cfg.run_name()),
    )


def recipe_parts(cfg: Config) -> list[int | None]:
    """The separate runs a config asks for: one per resolution for mm / separate branch runs."""
    if cfg.recipe == "mm":
        return [int(r) for r in cfg.mm.resolutions]
    if cfg.recipe == "branch" and cfg.branch.separate_runs:
        return [int(r) for r in cfg.branch.resolutions]
    return [None]


def build_recipe(cfg: Config, part: int | None = None, dataset=None) -> Recipe:
    """Build the recipe of a config (``part``: the resolution of one separate run)."""
    if cfg.recipe == "branch":
        from btnet.training.trunk_source import is_trunk_file

        if not is_trunk_file(cfg.branch.trunk):
            resolve_model_folder(cfg.branch.trunk)  # the cheapest check first
    dataset = dataset if dataset is not None else open_training_set(
        cfg.data.train, cfg.model.input_size, allow_unlabelled=not needs_labels(cfg))
    if cfg.recipe == "trunk":
        return build_trunk_recipe(cfg, dataset)
    if cfg.recipe == "mm":
        if part is None:
            raise ValueError("the mm recipe trains one resolution per run: pass part=r")
        return build_mm_recipe(cfg, dataset, part)
    if cfg.recipe == "branch":
        rs = [part] if part is not None else [int(r) for r in cfg.branch.resolutions]
        if cfg.branch.objective == "distill":
            from btnet.training.labelfree import build_labelfree_recipe

            return build_labelfree_recipe(cfg, dataset, rs)
        return build_branch_recipe(cfg, dataset, rs)
    raise ConfigError(f"unknown recipe {cfg.recipe!r}")
