"""Learning-rate schedules as pure functions of the optimiser step.

A pure function needs no state of its own: resuming at step k gives exactly the learning rate
of an uninterrupted run, and the checkpoint only has to remember k.
"""

from __future__ import annotations

import math

from btnet.training.config import ScheduleConfig


def warmup_steps(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    if cfg.warmup_steps > 0:
        return int(cfg.warmup_steps)
    return int(round(cfg.warmup_epochs * steps_per_epoch))


def lr_at(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig, warmup: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    Linear warm-up from base_lr/warmup to base_lr, then poly ``(1 - p)^power``, cosine or
    constant decay towards ``min_lr`` over the remaining steps.
    """
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "constant":
        return base_lr
    span = max(1, total_steps - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    if cfg.name == "poly":
        factor = (1.0 - progress) ** cfg.power
    elif cfg.name == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {cfg.name!r}")
    return cfg.min_lr + (base_lr - cfg.min_lr) * factor
