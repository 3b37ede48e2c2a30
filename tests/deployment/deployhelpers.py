"""Helpers of the deployment tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import numpy as np
import torch

from btnet.models import BTNet, build_backbone

PATHS = (7, 14, 28, 56)


def make_tiny_btnet(seed: int = 0, embedding_size: int = 32) -> BTNet:
    """iresnet18 width 8 at 56 px with branches 7/14/28; one train-mode pass so BN is not trivial."""
    torch.manual_seed(seed)
    model = BTNet(
        build_backbone("iresnet18", input_size=56, width=8, embedding_size=embedding_size),
        (7, 14, 28),
    )
    model.train()
    with torch.no_grad():
        for r in model.input_sizes:
            model(torch.randn(6, 3, r, r) * 0.8)
    return model.eval()


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
