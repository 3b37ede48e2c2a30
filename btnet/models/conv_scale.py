"""Where a trunk keeps each channel's scale: in the convolution or in the BatchNorm after it.

A convolution followed by BatchNorm computes the same function for any per-channel split of
the scale between the two (the BatchNorm normalises it away in train mode; in eval mode its
running statistics absorb it). What training does next is *not* the same: SGD with weight decay
moves a convolution's direction by about ``lr / |w|^2``, so the split sets each channel's
effective learning rate once branches copied from the trunk start to train.

An exporter that folds BatchNorm into the convolution (arcface_torch's ``torch2onnx.py``)
discards that split, so two copies of one network, the original and its ONNX import, would
train differently. :func:`unit_output_scale` puts every trunk into one canonical split
instead: each convolution (and the embedding's fully-connected layer) rescaled so that its
output has unit standard deviation per channel on a batch of faces, the BatchNorm after it
compensating, so the function is unchanged. A folded BatchNorm (an *identity* BatchNorm
carrying the bias, as :mod:`btnet.io.onnx_import` builds it) gets its statistics back on the
way: its weight becomes the measured scale and its running mean the measured mean, so it
normalises in train mode like the BatchNorm that was folded.

Model code: tensors in, parameters changed in place; the faces come from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["IDENTITY_VAR", "conv_batchnorm_pairs", "is_identity_batchnorm", "unit_output_scale"]

#: running variance that makes ``var + eps`` exactly 1.0 in float32 (eps = 1e-5): an identity
#: BatchNorm, ``x + bias`` bit for bit in eval mode
IDENTITY_VAR = float(torch.tensor(1.0, dtype=torch.float32) - torch.tensor(1e-5, dtype=torch.float32))


def conv_batchnorm_pairs(backbone: nn.Module, head: bool = False) -> list[tuple[str, str]]:
    """``(conv, BatchNorm right after it)`` module names of an insightface-layout IResNet;
    ``head`` adds ``("fc", "features")``, the embedding layer and its BatchNorm."""
    pairs = [("conv1", "bn1")] if "conv1" in backbone._modules else []
    for name, module in backbone.named_modules():
        if hasattr(module, "conv2") and hasattr(module, "bn3"):  # an IBasicBlock
            pairs += [(f"{name}.conv1", f"{name}.bn2"), (f"{name}.conv2", f"{name}.bn3")]
            if module.downsample is not None:
                pairs.append((f"{name}.downsample.0", f"{name}.downsample.1"))
    if head and "fc" in backbone._modules and "features" in backbone._modules:
        pairs.append(("fc", "features"))
    return pairs


def is_identity_batchnorm(bn: nn.Module) -> bool:
    """A BatchNorm an exporter folded away: weight 1, running mean 0, ``var + eps == 1``."""
    return (bool(torch.all(bn.weight == 1)) and bool(torch.all(bn.running_mean == 0))
            and bool(torch.all(bn.running_var == torch.tensor(IDENTITY_VAR))))


@torch.no_grad()
def _output_moments(backbone: nn.Module, layers: list[str], batches: Iterable[torch.Tensor]
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation (float64) of each layer's output, eval mode."""
    sums: dict[str, list] = {}
    hooks = []
    for layer in layers:
        def hook(_m, _i, out: torch.Tensor, layer: str = layer) -> None:
            y = out.double().transpose(0, 1).reshape(out.shape[1], -1)
            acc = sums.setdefault(layer, [0, 0.0, 0.0])
            acc[0] += y.shape[1]
            acc[1] = acc[1] + y.sum(1)
            acc[2] = acc[2] + (y * y).sum(1)
        hooks.append(backbone.get_submodule(layer).register_forward_hook(hook))
    was_training = backbone.training
    backbone.eval()
    try:
        for x in batches:
            backbone(x)
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    if not sums:
        raise ValueError("measuring a trunk's channel scales needs at least one batch of faces")
    out = {}
    for layer, (n, total, squares) in sums.items():
        mean = total / n
        std = torch.sqrt(torch.clamp(squares / n - mean * mean, min=0.0))
        out[layer] = mean, torch.where(std > 1e-6, std, torch.ones_like(std))  # dead channels
    return out


@torch.no_grad()
def unit_output_scale(backbone: nn.Module, batches: Iterable[torch.Tensor],
                      folded_only: bool = False) -> list[str]:
    """Rescale each conv (and ``fc``) to unit output std per channel; the function is unchanged.

    ``batches``: normalised faces at the canonical size (N x 3 x S x S). For an ordinary
    BatchNorm after the layer its running statistics are divided by the scale (and its weight
    corrects for ``eps``, so eval outputs agree to float rounding); an identity BatchNorm
    (folded by an exporter) becomes one with the measured statistics. ``folded_only`` touches
    only the identity ones, the minimum an ONNX import needs before BatchNorms train. Returns
    the BatchNorms rewritten.
    """
    pairs = [(c, b) for c, b in conv_batchnorm_pairs(backbone, head=True)
             if not folded_only or is_identity_batchnorm(backbone.get_submodule(b))]
    if not pairs:
        return []
    moments = _output_moments(backbone, [c for c, _ in pairs], batches)
    for layer, bn_name in pairs:
        mean, std = moments[layer]
        mod, bn = backbone.get_submodule(layer), backbone.get_submodule(bn_name)
        shape = (-1,) + (1,) * (mod.weight.dim() - 1)
        identity = is_identity_batchnorm(bn)
        mod.weight.div_(std.view(shape).to(mod.weight.dtype))
        bias = getattr(mod, "bias", None)
        if identity:
            # y -> (y - mean) / std feeds a BatchNorm that multiplies back and re-adds the mean;
            # a bias-free conv cannot subtract the mean, so its running mean records it.
            if bias is not None:
                bias.sub_(mean.to(bias.dtype)).div_(std.to(bias.dtype))
                bn.running_mean.zero_()
            else:
                bn.running_mean.copy_(mean / std)
            bn.weight.copy_(std)
            bn.bias.add_(mean.to(bn.bias.dtype))
            continue
        if bias is not None:
            bias.div_(std.to(bias.dtype))
        var = bn.running_var.double()
        new_var = var / (std * std)
        # gamma / sqrt(var + eps) must stay gamma' / sqrt(var / s^2 + eps) * (1 / s)
        correction = torch.sqrt(new_var + bn.eps) * std / torch.sqrt(var + bn.eps)
        bn.running_mean.div_(std.to(bn.running_mean.dtype))
        bn.running_var.copy_(new_var)
        bn.weight.mul_(correction.to(bn.weight.dtype))
    return [b for _, b in pairs]
