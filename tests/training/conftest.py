"""Tiny training configurations shared by the training tests (seconds on one CPU thread)."""

from __future__ import annotations

import copy

import pytest
import torch

torch.set_num_threads(1)

TINY = {
    "recipe": "trunk",
    "model": {"arch": "iresnet18", "input_size": 28, "width": 8, "embedding_size": 32},
    "data": {"train": "builtin:ids=8,per_id=4,seed=3", "sampler": "mr_v1", "num_workers": 0},
    "loss": {"name": "arcface", "s": 16.0},
    "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4},
    "schedule": {"name": "constant"},
    "train": {"max_steps": 4, "batch_size": 8, "num_threads": 1, "progress": False,
              "log_every": 1, "ckpt_every": 2, "seed": 0},
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def tiny():
    """``tiny(**sections)``: the tiny config with some sections overridden (a fresh dict)."""

    def make(**over) -> dict:
        return merge(TINY, over)

    return make


@pytest.fixture(scope="session")
def tiny_trunk(tmp_path_factory):
    """A tiny multi-resolution trunk trained for a few steps (with its classifier)."""
    from btnet.training import train

    out = tmp_path_factory.mktemp("trunk")
    return train(merge(TINY, {"train": {"max_steps": 3}}), output_dir=out)
