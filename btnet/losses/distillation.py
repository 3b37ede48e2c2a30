"""Distillation terms that tie a branch to the trunk it couples into.

*Branch distillation* (the paper's): the branch's output on the r-pixel image should equal the
trunk's coupling-unit output on the S-pixel image of the same face, so that the shared tail
receives the feature map it was trained on. *Embedding distillation* (optional): the branch
path's embedding should point where the trunk's embedding of the S-pixel image points.
Teachers are always detached: the trunk is the reference, never pulled towards the branch.
"""

from __future__ import annotations

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
