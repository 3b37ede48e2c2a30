"""Distillation terms that tie a branch to the trunk it couples into.

*Branch distillation* (the paper's): the branch's output on the r-pixel image should equal the
trunk's coupling-unit output on the S-pixel image of the same face, so that the shared tail
receives the feature map it was trained on. *Embedding distillation*: the branch path's
embedding should point where the trunk's embedding of the S-pixel image points (``cosine``), or
equal it outright, norm included (``mse``). Together the two are the label-free objective
(``branch.objective: distill``): no identities, no classifier, only the trunk as teacher.
Teachers are always detached: the trunk is the reference, never pulled towards the branch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from btnet.losses.precision import at_least_fp32


def branch_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (N x C x r x r), computed in at least float32."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"branch output {tuple(student.shape)} and trunk coupling feature "
            f"{tuple(teacher.shape)} differ; the branch does not couple into this trunk"
        )
    return F.mse_loss(at_least_fp32(student), at_least_fp32(teacher.detach()))


def embedding_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between embeddings, averaged: recognition compares directions, not norms."""
    return (1.0 - F.cosine_similarity(at_least_fp32(student), at_least_fp32(teacher.detach()),
                                      dim=1)).mean()


def embedding_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between raw embeddings: direction *and* norm of the teacher's.

    The norm carries no identity for a cosine matcher, so this asks more of the branch than
    recognition needs; measured against :func:`embedding_distillation` it was still the better
    term for 7-pixel faces and equal elsewhere, so label-free branches use it by default
    (docs/training.md, "Add branches to a recogniser you already have").
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student embedding {tuple(student.shape)} and teacher embedding "
                         f"{tuple(teacher.shape)} differ")
    return F.mse_loss(at_least_fp32(student), at_least_fp32(teacher.detach()))


EMBEDDING_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cosine": embedding_distillation,
    "mse": embedding_mse,
}


def embedding_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The embedding term called ``name`` (``branch.embed_loss``)."""
    try:
        return EMBEDDING_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown embedding loss {name!r}; choose {', '.join(EMBEDDING_LOSSES)}") from None
