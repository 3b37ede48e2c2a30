"""Additive-margin softmax losses over a normalised classifier (ArcFace, CosFace, CurricularFace).

Every loss here sees only cosines: :class:`NormalizedClassifier` L2-normalises both the features
and the class weights, so the logits are cos(theta) in [-1, 1]. The margin functions then bend
the target-class cosine and scale everything by ``s`` before a plain cross-entropy.

Numerics: the cosines are computed and bent in at least float32 even under autocast, clamped to [-1, 1],
and sin(theta) = sqrt(max(1 - cos^2, eps)) so the gradient of the square root stays finite at
cos = +-1 (the classic NaN of ArcFace in fp16). The fall-back branch ``cos - m sin(m)`` keeps
cos(theta + m) monotonic once theta + m passes pi, as in the insightface implementations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from btnet.losses.precision import at_least_fp32

_SIN_EPS = 1e-6


class NormalizedClassifier(nn.Module):
    """A bias-free linear layer on L2-normalised features and weights, returning cosines."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        # Leave autocast: normalising fp16 vectors of size 512 loses the precision the margin needs.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            feats = F.normalize(at_least_fp32(embeddings), dim=1)
            weight = F.normalize(at_least_fp32(self.weight), dim=1)
            return F.linear(feats, weight).clamp(-1.0, 1.0)


def _target_cos(cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return cos.gather(1, labels.view(-1, 1)).squeeze(1)


def _safe_sin(cos: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((1.0 - cos * cos).clamp_min(_SIN_EPS))


class MarginLoss(nn.Module):
    """Turns cosines and labels into scaled, margin-adjusted logits (see :meth:`logits`)."""

    name = "margin"

    def __init__(self, s: float = 64.0, m: float = 0.5):
        super().__init__()
        self.s = float(s)
        self.m = float(m)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the margin logits (mean over the batch)."""
        return F.cross_entropy(self.logits(cos, labels), labels)

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}"


class CosFace(MarginLoss):
    """Large-margin cosine loss: the target logit is ``s * (cos - m)``."""

    name = "cosface"

    def __init__(self, s: float = 64.0, m: float = 0.4):
        super().__init__(s, m)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = at_least_fp32(cos).clamp(-1.0, 1.0)
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.s * (cos - self.m * onehot)


class ArcFace(MarginLoss):
    """Additive angular margin: the target logit is ``s * cos(theta + m)``."""

    name = "arcface"

    def __init__(self, s: float = 64.0, m: float = 0.5):
        super().__init__(s, m)
        self.cos_m = math.cos(self.m)
        self.sin_m = math.sin(self.m)
        self.threshold = math.cos(math.pi - self.m)  # theta + m > pi beyond this
        self.fallback = math.sin(math.pi - self.m) * self.m

    def bent(self, target: torch.Tensor) -> torch.Tensor:
        """cos(theta + m) of the target cosines."""
        return target * self.cos_m - _safe_sin(target) * self.sin_m

    def target_logit(self, target: torch.Tensor, bent: torch.Tensor | None = None) -> torch.Tensor:
        """cos(theta + m), with the monotonic fall-back ``cos - m sin(m)`` past pi."""
        bent = self.bent(target) if bent is None else bent
        return torch.where(target > self.threshold, bent, target - self.fallback)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = at_least_fp32(cos).clamp(-1.0, 1.0)
        target = self.target_logit(_target_cos(cos, labels))
        out = cos.scatter(1, labels.view(-1, 1), target.view(-1, 1))
        return self.s * out


class CurricularFace(ArcFace):
    """CurricularFace (Huang et al., CVPR 2020): ArcFace plus adaptive weighting of hard negatives.

    A negative cosine larger than the bent target cosine is *hard*; it becomes ``cos * (t + cos)``,
    where ``t`` is a running mean of the target cosines (momentum 0.01). Early in training t is
    about 0, so hard negatives are down-weighted (easy samples first); as t grows they gain
    weight. ``t`` is a buffer, so it is checkpointed and, under DistributedDataParallel, averaged
    over the global batch so every rank applies the same curriculum.
    """

    name = "curricularface"

    def __init__(self, s: float = 64.0, m: float = 0.5, momentum: float = 0.01):
        super().__init__(s, m)
        self.momentum = float(momentum)
        self.register_buffer("t", torch.zeros(1))

    @torch.no_grad()
    def _update_t(self, target: torch.Tensor) -> None:
        target = at_least_fp32(target.detach())
        total = torch.stack([target.sum(), target.new_tensor(target.numel())])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        mean = total[0] / total[1].clamp_min(1.0)
        self.t.mul_(1.0 - self.momentum).add_(self.momentum * mean.to(self.t.dtype))

    def logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = at_least_fp32(cos).clamp(-1.0, 1.0)
        target = _target_cos(cos, labels)
        bent = self.bent(target)
        final = self.target_logit(target, bent)
        if self.training:
            self._update_t(target)
        hard = cos > bent.view(-1, 1)  # as in the original: against cos(theta+m) itself
        t = self.t.to(cos.dtype)
        out = torch.where(hard, cos * (t + cos), cos)
        out = out.scatter(1, labels.view(-1, 1), final.view(-1, 1))
        return self.s * out

    def extra_repr(self) -> str:
        return f"s={self.s}, m={self.m}, momentum={self.momentum}"


MARGIN_LOSSES: dict[str, type[MarginLoss]] = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "curricularface": CurricularFace,
}

# The paper's (and the original papers') settings.
DEFAULT_MARGINS: dict[str, tuple[float, float]] = {
    "arcface": (64.0, 0.5),
    "cosface": (64.0, 0.4),
    "curricularface": (64.0, 0.5),
}


def build_margin_loss(name: str, s: float | None = None, m: float | None = None) -> MarginLoss:
    """A margin loss by name; ``s``/``m`` default to the published settings."""
    key = name.lower().replace("_", "").replace("-", "")
    if key not in MARGIN_LOSSES:
        raise ValueError(f"unknown margin loss {name!r}; choose one of {sorted(MARGIN_LOSSES)}")
    default_s, default_m = DEFAULT_MARGINS[key]
    return MARGIN_LOSSES[key](s=default_s if s is None else s, m=default_m if m is None else m)


class MarginHead(nn.Module):
    """Classifier plus margin loss: ``head(embeddings, labels) -> loss``.

    Kept as one module so that the classifier (needed later for BCT) and the loss state
    (CurricularFace's t) are saved, checkpointed and wrapped by DDP together.
    """

    def __init__(self, embedding_size: int, num_classes: int, loss: MarginLoss):
        super().__init__()
        self.classifier = NormalizedClassifier(embedding_size, num_classes)
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(self.classifier(embeddings), labels)

    @torch.no_grad()
    def accuracy(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Top-1 accuracy of the (margin-free) cosine classifier."""
        return (self.classifier(embeddings).argmax(1) == labels).float().mean()
