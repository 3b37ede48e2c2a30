"""``train(config) -> TrainResult``: the one entry point the CLI and the pipelines call.

Output folder of a run (``config.output_dir``, default ``runs/<name>``)::

    config.yaml            the resolved configuration
    checkpoint/last.pt     the latest checkpoint (resume point)
    metrics.jsonl          every record; train.csv / eval.csv per kind
    model/                 the trained model (btnet.io.model_store layout)
    result.json            written last: the run is complete

Recipes with one run per resolution (``mm``, ``branch`` with ``separate_runs``) put each run in
``r<r>/`` with the layout above; ``TrainResult.parts`` maps r to each part's result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from btnet.training import distributed as D
from btnet.training.config import Config, load_config
from btnet.training.loop import Trainer, checkpoint_step, seed_everything
from btnet.training.recipes import (
    build_recipe,
    check_branch_pairing,
    needs_labels,
    open_training_set,
    recipe_parts,
)
from btnet.training.validation import make_verifier

log = logging.getLogger(__name__)

RESULT_JSON = "result.json"


@dataclass
class TrainResult:
    output_dir: Path
    model_path: Path  # a stored model folder (load with btnet.io.model_store.load_model)
    metrics: dict = field(default_factory=dict)  # last train record and last verification
    steps: int = 0
    parts: dict[int, TrainResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "output_dir": str(self.output_dir),
            "model_path": str(self.model_path),
            "metrics": self.metrics,
            "steps": self.steps,
            "parts": {str(k): v.to_dict() for k, v in self.parts.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        return cls(Path(d["output_dir"]), Path(d["model_path"]), d.get("metrics", {}),
                   int(d.get("steps", 0)),
                   {int(k): cls.from_dict(v) for k, v in d.get("parts", {}).items()})


def _as_config(config: Config | str | Path | dict, overrides) -> Config:
    if isinstance(config, Config) and not overrides:
        return config
    if isinstance(config, (Config, dict)):
        from btnet.training.config import config_from_dict, merge_dicts, parse_overrides

        data = config.to_dict() if isinstance(config, Config) else config
        extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        return config_from_dict(merge_dicts(data, extra or {}))
    return load_config(config, overrides)


def _finished(out: Path) -> TrainResult | None:
    path = out / RESULT_JSON
    if path.is_file():
        return TrainResult.from_dict(json.loads(path.read_text()))
    return None


def _write_result(out: Path, result: TrainResult) -> None:
    from btnet.io.atomic import atomic_write_text

    atomic_write_text(out / RESULT_JSON, json.dumps(result.to_dict(), indent=2) + "\n")


def _train_part(cfg: Config, part: int | None, out: Path, resume: bool | str,
                ctx: D.DistContext, dataset, verifier) -> TrainResult:
    done = _finished(out)
    has_ckpt = checkpoint_step(out) is not None
    if done is not None and resume:
        log.info("%s is already trained; reusing it", out)
        return done
    if not resume and (has_ckpt or done is not None):
        raise ValueError(
            f"{out} already holds a training run; pass --resume to continue it or --out to "
            "train into another folder"
        )
    if resume is True and not has_ckpt:
        raise FileNotFoundError(f"--resume: no checkpoint in {out}/checkpoint to continue from")
    seed_everything(cfg.train.seed)
    recipe = build_recipe(cfg, part, dataset)
    trainer = Trainer(cfg, recipe, out, ctx, verifier)
    loop = trainer.fit(resume=has_ckpt and bool(resume))
    model_path = out / "model"
    if ctx.is_main:
        recipe.save(model_path)
    metrics = {"train": loop.last_metrics, "eval": loop.eval_metrics}
    result = TrainResult(out, model_path, metrics, loop.steps)
    if ctx.is_main:
        _write_result(out, result)
    D.barrier(ctx)
    return result


def train(
    config: Config | str | Path | dict,
    overrides: list[str] | dict | None = None,
    *,
    output_dir: str | Path | None = None,
    resume: bool | str = False,
) -> TrainResult:
    """Train what ``config`` describes; returns where the model is and the final metrics.

    ``resume``: False (refuse to overwrite an existing run), True (continue the checkpoint in
    the output folder; error if there is none) or ``"auto"`` (continue if there is one, reuse a
    finished run, otherwise start). Under ``torchrun`` every process calls this; only rank 0
    writes files.
    """
    cfg = _as_config(config, overrides)
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    out = cfg.out_dir()
    ctx = D.init_distributed(cfg.train.device)
    try:
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        parts = recipe_parts(cfg)
        single = parts == [None]
        dataset = open_training_set(cfg.data.train, cfg.model.input_size,
                                    allow_unlabelled=not needs_labels(cfg))
        if cfg.recipe == "branch":  # every part's pairing is checked before part 1 trains
            check_branch_pairing(cfg, dataset, [int(r) for r in cfg.branch.resolutions])
        verifier = make_verifier(cfg)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if single:
            return _train_part(cfg, None, out, resume, ctx, dataset, verifier)
        results = {}
        for r in parts:
            results[r] = _train_part(cfg, r, out / f"r{r}", resume, ctx, dataset, verifier)
        summary = TrainResult(out, out, {f"r{r}": res.metrics for r, res in results.items()},
                              sum(res.steps for res in results.values()), results)
        if ctx.is_main:
            _write_result(out, summary)
        return summary
    finally:
        D.cleanup(ctx)
