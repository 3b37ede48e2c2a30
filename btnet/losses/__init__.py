"""Training objectives: margin softmax losses and branch-to-trunk distillation."""

from btnet.losses.distillation import (
    EMBEDDING_LOSSES,
    branch_distillation,
    embedding_distillation,
    embedding_loss,
    embedding_mse,
)
from btnet.losses.margin import (
    DEFAULT_MARGINS,
    MARGIN_LOSSES,
    ArcFace,
    CosFace,
    CurricularFace,
    MarginHead,
    MarginLoss,
    NormalizedClassifier,
    build_margin_loss,
)

__all__ = [
    "DEFAULT_MARGINS",
    "EMBEDDING_LOSSES",
    "MARGIN_LOSSES",
    "ArcFace",
    "CosFace",
    "CurricularFace",
    "MarginHead",
    "MarginLoss",
    "NormalizedClassifier",
    "branch_distillation",
    "build_margin_loss",
    "embedding_distillation",
    "embedding_loss",
    "embedding_mse",
]
