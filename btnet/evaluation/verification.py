"""Multi-resolution 1:1 verification runner (the paper's Table 1 protocol).

For a setting ``r1&r2`` the first image of every pair is degraded to ``r1 x r1`` and the second
to ``r2 x r2`` by the shared resolution pipeline (:mod:`btnet.data.resolution`: bring to the
canonical size S, then area down-sampling); each encoder then applies its own input convention
(a BTNet serves r x r through branch r, an up-sampling baseline resizes back to S). Each image
is embedded once per resolution and reused by every setting that needs it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from btnet.data.base import PairSet
from btnet.data.resolution import downsample, sample_rng, upsample
from btnet.evaluation.embedding import Encoder, embed_source
from btnet.evaluation.metrics_identification import thin_indices
from btnet.evaluation.metrics_verification import (
    DEFAULT_FARS,
    check_protocol,
    roc_curve,
    verification_metrics,
)
from btnet.inference.encoding import l2_normalize

log = logging.getLogger(__name__)

DEFAULT_LOW_RESOLUTIONS: tuple[int, ...] = (7, 14, 28)
# Sets the field reports with insightface's eval/verification.py (papers, arcface_torch logs).
INSIGHTFACE_FORMATS: frozenset[str] = frozenset({"bin", "lfw-pairs"})
Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EncoderLike = Encoder | Callable[[], Encoder]


@dataclass(frozen=True, order=True)
class Setting:
    """Resolutions of the first and second image of each pair."""

    r1: int
    r2: int

    @property
    def name(self) -> str:
        return f"{self.r1}&{self.r2}"

    @property
    def cross(self) -> bool:
        return self.r1 != self.r2

    def __str__(self) -> str:
        return self.name


def default_settings(
    canonical: int = 112, low: Sequence[int] = DEFAULT_LOW_RESOLUTIONS
) -> list[Setting]:
    """Table 1's columns: S&r for each low r, then r&r, then S&S (S = canonical size).

    The low resolutions stay absolute (the branch sizes); only the high one follows S, so at
    S=56 the defaults are 56&7, 56&14, 56&28, 7&7, 14&14, 28&28, 56&56.
    """
    lows = [int(r) for r in low if int(r) < canonical]
    return (
        [Setting(canonical, r) for r in lows]
        + [Setting(r, r) for r in lows]
        + [Setting(canonical, canonical)]
    )


def _parse_size(token: str, canonical: int) -> int:
    t = token.strip().lower()
    if t in ("s", "hr", "canonical"):
        return canonical
    if not t.isdigit():
        raise ValueError(f"bad resolution {token!r}: use an integer or 'S'")
    r = int(t)
    if not 1 <= r <= canonical:
        raise ValueError(
            f"resolution {r} is outside [1, {canonical}] (canonical size S={canonical}; "
            f"write 'S' for the high resolution)"
        )
    return r


def parse_settings(specs: str | Sequence[str] | None, canonical: int) -> list[Setting]:
    """Parse ``"S&7,14&14"`` (or a list of such strings); ``None``/"default" gives the defaults."""
    if specs is None:
        return default_settings(canonical)
    items = [specs] if isinstance(specs, str) else list(specs)
    tokens = [t for item in items for t in re.split(r"[,\s]+", item) if t]
    if not tokens or tokens == ["default"]:
        return default_settings(canonical)
    out = []
    for tok in tokens:
        parts = re.split(r"[&x:]", tok)
        if len(parts) != 2:
            raise ValueError(f"bad setting {tok!r}: expected r1&r2, e.g. S&7 or 14&14")
        s = Setting(_parse_size(parts[0], canonical), _parse_size(parts[1], canonical))
        if s not in out:
            out.append(s)
    return out


def subset_pairs(pairset: PairSet, n: int | None) -> PairSet:
    """``n`` evenly spaced pairs, in file order (quick runs).

    Taking the *first* n pairs of a protocol file is a trap: LFW's first 600 are one fold of
    300 genuine then 300 impostor pairs, so contiguous folds would hold one class each. Even
    spacing keeps every part of the file, and hence both classes, in every fold.
    """
    if not n or n >= len(pairset):
        return pairset
    idx = np.unique(np.linspace(0, len(pairset) - 1, int(n)).round().astype(np.int64))
    return PairSet(pairset.name, pairset.images, pairset.left[idx], pairset.right[idx],
                   pairset.issame[idx], source_format=pairset.source_format)


def default_protocol(pairset: PairSet) -> str:
    """``"insightface"`` for ``.bin`` sets and LFW ``pairs.txt`` files, else ``"exact"``.

    Those are the sets whose published accuracies come from insightface's
    ``eval/verification.py``, so btnet's number is comparable only under that protocol; pair
    lists and sets built in code (the studies' LFW dev-test pairs, built-in faces) keep the
    finer ``"exact"`` rule.
    """
    return "insightface" if pairset.source_format in INSIGHTFACE_FORMATS else "exact"


def resolution_transform(
    r: int,
    canonical: int,
    degradation: Degradation | None = None,
    seed: int = 0,
) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(image, index)``: the face at ``r x r`` as the shared pipeline makes it.

    The image is first brought to ``S x S`` (as training does), then area-down-sampled to r;
    an optional surveillance degradation is applied to the small image with a generator that
    depends only on ``(seed, r, index)``, so every model sees the same probe.
    """

    def apply(img: np.ndarray, index: int) -> np.ndarray:
        if img.shape[:2] != (canonical, canonical):
            if img.shape[0] >= canonical and img.shape[1] >= canonical:
                img = downsample(img, canonical)
            else:
                img = upsample(img, canonical)
        small = downsample(img, r) if r < canonical else img
        if degradation is not None:
            small = degradation(small, sample_rng(seed, r, int(index)))
        return small

    return apply


class _IndexedTransform:
    """Adapter so :func:`embed_source` can pass the image index to the transform."""

    def __init__(self, source, fn: Callable[[np.ndarray, int], np.ndarray]):
        self.source = source
        self.fn = fn

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.fn(self.source[index], index)


@dataclass
class VerificationResult:
    """One (model, set, setting) cell of a Table-1 report."""

    model: str
    dataset: str
    setting: str
    r1: int
    r2: int
    accuracy_mean: float
    accuracy_std: float
    metrics: dict = field(default_factory=dict)
    roc: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve(encoder: EncoderLike) -> Encoder:
    return encoder if hasattr(encoder, "encode") else encoder()


def pair_scores(emb_left: np.ndarray, emb_right: np.ndarray) -> np.ndarray:
    """Cosine similarity of row-aligned embeddings."""
    return np.sum(l2_normalize(emb_left) * l2_normalize(emb_right), axis=1)


def evaluate_pairs(
    encoder: Encoder,
    pairset: PairSet,
    settings: Sequence[Setting],
    canonical: int,
    model_name: str = "model",
    n_folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FARS,
    flip: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    degradation: Degradation | None = None,
    seed: int = 0,
    protocol: str | None = None,
) -> list[VerificationResult]:
    """Evaluate one encoder on one pair set at every setting (each image embedded once per r).

    An encoder whose resolutions do not share one embedding space (``shared_space = False``,
    e.g. phi_mm) is evaluated at same-resolution settings only. ``protocol`` is the k-fold
    accuracy rule (:mod:`btnet.evaluation.metrics_verification`); ``None`` takes
    :func:`default_protocol` of the set.
    """
    protocol = check_protocol(protocol) if protocol is not None else default_protocol(pairset)
    if not getattr(encoder, "shared_space", True):
        skipped = [s.name for s in settings if s.cross]
        if skipped:
            log.info("%s: no shared space across resolutions, skipping %s", model_name, skipped)
        settings = [s for s in settings if not s.cross]
    needed: dict[int, set[int]] = {}
    for s in settings:
        needed.setdefault(s.r1, set()).update(pairset.left.tolist())
        needed.setdefault(s.r2, set()).update(pairset.right.tolist())
    embeddings: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for r in sorted(needed, reverse=True):
        idx = np.array(sorted(needed[r]), dtype=np.int64)
        src = _IndexedTransform(pairset.images, resolution_transform(r, canonical, degradation, seed))
        emb = embed_source(
            encoder, src, idx, batch_size=batch_size, flip=flip, progress=progress,
            desc=f"{model_name} {pairset.name} @{r}",
        )
        embeddings[r] = (idx, emb)

    def lookup(r: int, which: np.ndarray) -> np.ndarray:
        idx, emb = embeddings[r]
        return emb[np.searchsorted(idx, which)]

    results = []
    for s in settings:
        scores = pair_scores(lookup(s.r1, pairset.left), lookup(s.r2, pairset.right))
        m = verification_metrics(scores, pairset.issame, n_folds, far_targets, protocol)
        roc_d: dict = {}
        if pairset.issame.any() and (~pairset.issame).any():
            roc = roc_curve(scores, pairset.issame)
            keep = thin_indices(len(roc.far), 1000)
            roc_d = {"far": roc.far[keep].tolist(), "tar": roc.tar[keep].tolist()}
        log.info("%s %s %s: %.4f +- %.4f (%s)", model_name, pairset.name, s.name,
                 m["accuracy_mean"], m["accuracy_std"], protocol)
        results.append(
            VerificationResult(model_name, pairset.name, s.name, s.r1, s.r2,
                               m["accuracy_mean"], m["accuracy_std"], m, roc_d)
        )
    return results


def evaluate_verification(
    encoders: Mapping[str, EncoderLike] | Sequence[EncoderLike],
    pairsets: Sequence[PairSet],
    settings: Sequence[Setting] | None = None,
    canonical: int = 112,
    **kwargs,
) -> list[VerificationResult]:
    """Models x sets x settings, as a flat list of results (feed it to the report writers).

    ``encoders`` is a mapping name -> encoder, or a sequence of encoders named by their ``name``
    attribute. Any of them may be a zero-argument loader, called when its turn comes so that
    only one model is in memory at a time. ``kwargs`` go to :func:`evaluate_pairs`.
    """
    settings = list(settings) if settings is not None else default_settings(canonical)
    items = (list(encoders.items()) if isinstance(encoders, Mapping)
             else [(None, e) for e in encoders])
    results: list[VerificationResult] = []
    for i, (key, enc) in enumerate(items):
        encoder = _resolve(enc)
        name = key or getattr(encoder, "name", None) or f"model{i + 1}"
        for ps in pairsets:
            results.extend(evaluate_pairs(encoder, ps, settings, canonical, model_name=name,
                                          **kwargs))
        del encoder
    return results
