"""Conversion between uint8 face images and the tensors the networks take.

All recognisers in btnet use the insightface convention: RGB, channels first, pixel values
mapped to [-1, 1] by ``x / 127.5 - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Turn one HxWx3 uint8 image, an NxHxWx3 array or a list of equal-size images into NCHW."""
    if isinstance(images, np.ndarray):
        arr = images[None] if images.ndim == 3 else images
    else:
        if len(images) == 0:
            raise ValueError("to_tensor got an empty list of images")
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ValueError(f"to_tensor needs images of one size, got {sorted(shapes)}")
        arr = np.stack(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected ...xHxWx3 RGB images, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor` (NCHW in [-1, 1] to NxHxWx3 uint8)."""
    x = (tensor.detach().float().cpu() + 1.0) * 127.5
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
