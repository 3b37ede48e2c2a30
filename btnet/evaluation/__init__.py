"""Evaluation: the paper's protocols (verification at r1&r2, open-set 1:N, templates), gains,
Table-1 reports and plots. Metrics live in ``metrics_*``; runners take any encoder with
``encode(images, batch_size, flip, progress) -> .embeddings``.
"""

from btnet.evaluation.gains import GainBaselines, compute_gains
from btnet.evaluation.identification import (
    STRATEGIES,
    IdentificationResult,
    compare_strategies,
    evaluate_openset,
    selector_factory,
)
from btnet.evaluation.report import write_identification_report, write_verification_report
from btnet.evaluation.verification import (
    Setting,
    VerificationResult,
    default_settings,
    evaluate_verification,
    parse_settings,
    subset_pairs,
)

__all__ = [
    "GainBaselines",
    "IdentificationResult",
    "STRATEGIES",
    "Setting",
    "VerificationResult",
    "compare_strategies",
    "compute_gains",
    "default_settings",
    "evaluate_openset",
    "evaluate_verification",
    "parse_settings",
    "selector_factory",
    "subset_pairs",
    "write_identification_report",
    "write_verification_report",
]
