"""Loss arithmetic precision: at least float32, never less, never forced down.

Under autocast, activations arrive as fp16/bf16; margins and cosines need float32 there.
A float64 run (``train.dtype: float64``, used for exactness checks) must stay float64, or its
rounding noise is back at float32 level.
"""

from __future__ import annotations

import torch

_LOW = (torch.float16, torch.bfloat16)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 if it is a half type (or an integer), otherwise unchanged."""
    if x.dtype in _LOW or not x.is_floating_point():
        return x.float()
    return x
