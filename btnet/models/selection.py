"""Branch selection: which path of a BTNet serves a face of size W x H.

The paper's Table 2 compares an *indicator* (min, max or mean of W and H) with an *allocation*
rule (floor: the largest path not above the indicator, so the face is only ever down-sampled;
ceil: the smallest path not below it, so it is only up-sampled; near: the closest path). The
rule is reduced to explicit thresholds so users can read, log and override them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INDICATORS = ("min", "max", "avg")
ALLOCATIONS = ("floor", "near", "ceil")


@dataclass(frozen=True)
class BranchSelector:
    """Maps a face size to a path resolution.

    ``paths`` are the available input resolutions, the canonical size included (the trunk).
    ``thresholds[i]`` is the smallest indicator value routed to ``paths[i + 1]``; values below
    ``thresholds[0]`` go to the smallest path. Build with :meth:`from_rule` for the paper's nine
    strategies or pass thresholds yourself.
    """

    paths: tuple[int, ...]
    thresholds: tuple[float, ...]
    indicator: str = "min"
    allocation: str = "custom"

    def __post_init__(self) -> None:
        if list(self.paths) != sorted(set(self.paths)) or not self.paths:
            raise ValueError(f"paths must be distinct and increasing, got {self.paths}")
        if len(self.thresholds) != len(self.paths) - 1:
            raise ValueError(
                f"{len(self.paths)} paths need {len(self.paths) - 1} thresholds, got {self.thresholds}"
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError(f"thresholds must be non-decreasing, got {self.thresholds}")
        if self.indicator not in INDICATORS:
            raise ValueError(f"indicator must be one of {INDICATORS}, got {self.indicator!r}")

    @classmethod
    def from_rule(
        cls, paths: Sequence[int], indicator: str = "min", allocation: str = "near"
    ) -> BranchSelector:
        """The paper's strategies: ``indicator`` in min/max/avg, ``allocation`` in floor/near/ceil.

        floor routes v to the largest path p <= v (threshold p_{i+1}); ceil to the smallest
        p >= v (threshold just above p_i); near to the closest path, ties going to the larger one
        (threshold at the midpoint).
        """
        p = sorted(int(x) for x in paths)
        if allocation == "floor":
            th = [float(b) for b in p[1:]]
        elif allocation == "ceil":
            th = [float(a) + 1e-6 for a in p[:-1]]
        elif allocation == "near":
            th = [(a + b) / 2.0 for a, b in zip(p[:-1], p[1:])]
        else:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
        return cls(tuple(p), tuple(th), indicator, allocation)

    def indicator_value(self, height: int, width: int) -> float:
        if self.indicator == "min":
            return float(min(width, height))
        if self.indicator == "max":
            return float(max(width, height))
        return (width + height) / 2.0

    def select(self, height: int, width: int) -> int:
        """Resolution of the path for a face of ``height`` x ``width`` pixels."""
        if height <= 0 or width <= 0:
            raise ValueError(f"face size must be positive, got {width}x{height}")
        return self.select_value(self.indicator_value(height, width))

    def select_value(self, v: float) -> int:
        """Path for an indicator value ``v``: a face size, or an estimated effective resolution
        (quality-aware routing, :mod:`btnet.models.quality`)."""
        chosen = self.paths[0]
        for threshold, path in zip(self.thresholds, self.paths[1:]):
            if v >= threshold:
                chosen = path
        return chosen

    def describe(self) -> list[str]:
        """Human-readable routing table, e.g. ``min(W,H) in [21, 70) -> 28``."""
        name = {"min": "min(W,H)", "max": "max(W,H)", "avg": "(W+H)/2"}[self.indicator]
        bounds = [0.0, *self.thresholds, float("inf")]
        return [
            f"{name} in [{_fmt(lo)}, {_fmt(hi)}) -> {p}"
            for p, lo, hi in zip(self.paths, bounds[:-1], bounds[1:])
        ]

    def to_dict(self) -> dict:
        return {
            "paths": list(self.paths),
            "thresholds": list(self.thresholds),
            "indicator": self.indicator,
            "allocation": self.allocation,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BranchSelector:
        return cls(
            tuple(int(p) for p in data["paths"]),
            tuple(float(t) for t in data["thresholds"]),
            data.get("indicator", "min"),
            data.get("allocation", "custom"),
        )


def _fmt(v: float) -> str:
    if v == float("inf"):
        return "inf"
    return f"{v:g}" if abs(v - round(v)) > 1e-3 else f"{round(v)}"


def all_strategies(paths: Sequence[int]) -> dict[str, BranchSelector]:
    """The nine indicator x allocation strategies of the paper's Table 2, keyed ``min/near``."""
    return {
        f"{ind}/{alloc}": BranchSelector.from_rule(paths, ind, alloc)
        for ind in INDICATORS
        for alloc in ALLOCATIONS
    }
