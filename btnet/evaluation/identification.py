"""Open-set 1:N identification runner (QMUL-SurvFace protocol and the generic layout).

Gallery, mated and unmated probes are embedded as they are stored (any size): each encoder's
own convention decides how a face of W x H pixels is served; for a BTNet that is its
branch-selection policy. :func:`compare_strategies` re-runs the protocol under each of the nine
indicator x allocation policies of the paper's Table 2 through an ``encoder_factory(policy)``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from btnet.data.base import OpenSetProtocol
from btnet.evaluation.embedding import Encoder, embed_source
from btnet.evaluation.metrics_identification import (
    DEFAULT_CMC_RANKS,
    DEFAULT_FPIRS,
    identification_metrics,
)

log = logging.getLogger(__name__)

INDICATORS = ("min", "max", "avg")
ALLOCATIONS = ("floor", "near", "ceil")
STRATEGIES: tuple[str, ...] = tuple(f"{i}/{a}" for i in INDICATORS for a in ALLOCATIONS)

EncoderFactory = Callable[[str], Encoder]


@dataclass
class IdentificationResult:
    """One model (under one policy) on one protocol."""

    model: str
    protocol: str
    policy: str | None
    metrics: dict = field(default_factory=dict)
    path_counts: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model if self.policy is None else f"{self.model} [{self.policy}]"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_openset(
    encoder: Encoder,
    protocol: OpenSetProtocol,
    model_name: str | None = None,
    policy: str | None = None,
    rank: int = 20,
    fpir_targets: Sequence[float] = DEFAULT_FPIRS,
    cmc_ranks: Sequence[int] = DEFAULT_CMC_RANKS,
    gallery_mode: str = "mean",
    batch_size: int = 64,
    flip: bool = False,
    progress: bool = True,
) -> IdentificationResult:
    """TPIR@rank at FPIR targets, TPIR-FPIR AUC and closed-set CMC for one encoder.

    ``gallery_mode``: ``"mean"`` (per-identity mean feature, the SurvFace reference) or
    ``"image"``. ``path_counts`` records how many faces each encoder path served.
    """
    name = model_name or getattr(encoder, "name", None) or "model"
    counts: Counter = Counter()
    common = dict(batch_size=batch_size, flip=flip, progress=progress, path_counts=counts)
    tag = f"{name}{'' if policy is None else ' ' + policy}"
    gallery = embed_source(encoder, protocol.gallery, desc=f"{tag} gallery", **common)
    mated = embed_source(encoder, protocol.mated, desc=f"{tag} mated", **common)
    unmated = (embed_source(encoder, protocol.unmated, desc=f"{tag} unmated", **common)
               if len(protocol.unmated) else None)
    m = identification_metrics(gallery, protocol.gallery_ids, mated, protocol.mated_ids, unmated,
                               rank, fpir_targets, cmc_ranks, gallery_mode)
    if "tpir_at_fpir" in m:
        log.info("%s %s: TPIR@%d %s, AUC %.4f", tag, protocol.name, rank, m["tpir_at_fpir"],
                 m["auc"])
    return IdentificationResult(name, protocol.name, policy, m, dict(counts))


def selector_factory(encoder) -> EncoderFactory:
    """``policy -> encoder`` for a BTNet encoder exposing ``with_selector`` (btnet.inference).

    The policy string is ``"<indicator>/<allocation>"``, e.g. ``"max/ceil"``.
    """
    from btnet.models.selection import BranchSelector

    if not hasattr(encoder, "with_selector"):
        raise ValueError(f"{getattr(encoder, 'name', 'this encoder')} has no branch selection "
                         "to vary (only BTNet encoders do)")
    paths = encoder.selector.paths

    def make(policy: str) -> Encoder:
        indicator, allocation = parse_policy(policy)
        return encoder.with_selector(BranchSelector.from_rule(paths, indicator, allocation))

    return make


def parse_policy(policy: str) -> tuple[str, str]:
    """``"max/ceil"`` (or ``max-ceil``, ``max_ceil``) -> ``("max", "ceil")``."""
    for sep in ("/", "-", "_", ":"):
        if sep in policy:
            ind, alloc = policy.lower().split(sep, 1)
            break
    else:
        raise ValueError(f"bad policy {policy!r}: expected <indicator>/<allocation>, e.g. min/near")
    if ind not in INDICATORS or alloc not in ALLOCATIONS:
        raise ValueError(f"bad policy {policy!r}: indicator in {INDICATORS}, allocation in "
                         f"{ALLOCATIONS}")
    return ind, alloc


def compare_strategies(
    encoder_factory: EncoderFactory,
    protocol: OpenSetProtocol,
    strategies: Sequence[str] = STRATEGIES,
    model_name: str | None = None,
    **kwargs,
) -> list[IdentificationResult]:
    """Run the protocol once per branch-selection policy (Table 2); kwargs as evaluate_openset."""
    results = []
    for policy in strategies:
        parse_policy(policy)
        enc = encoder_factory(policy)
        results.append(evaluate_openset(enc, protocol, model_name=model_name, policy=policy,
                                        **kwargs))
    return results
