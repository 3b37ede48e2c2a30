"""Accuracy gains over the baselines, as Table 1 reports them.

What is computed (accuracies as fractions, gains in percentage points):

* cross-resolution gain (eq. 4) of a model at a setting ``S&r`` (``r1 != r2``)::

      G_cross_hr(r) = 100 * (acc_model(S&r) - acc_phi_hr(S&r))
      G_cross_mr(r) = 100 * (acc_model(S&r) - acc_phi_mr(S&r))

* same-resolution gain (eq. 5) at ``r&r``::

      G_same_hr(r) = 100 * (acc_model(r&r) - acc_phi_hr(r&r))
      G_same_r(r)  = 100 * (acc_model(r&r) - acc_phi_r(r&r))

  where ``phi_r`` is the model trained only at resolution r (phi_mm's member for r); the
  baseline for r can be one model name for all r (a phi_mm encoder that routes per resolution)
  or a mapping ``r -> model name``.

A gain is missing (``None``) when its baseline was not evaluated at that setting. The paper
gives these as accuracy differences of the model against each baseline at the same setting;
we report exactly the differences above, nothing averaged over settings unless asked
(:func:`mean_gains`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

GAIN_KEYS = ("cross_vs_hr", "cross_vs_mr", "same_vs_hr", "same_vs_r")


@dataclass
class GainBaselines:
    """Names (report rows) of the baselines gains are measured against."""

    hr: str | None = None
    mr: str | None = None
    r: str | Mapping[int, str] | None = None
    extra: dict = field(default_factory=dict)

    def for_resolution(self, r: int) -> str | None:
        if self.r is None or isinstance(self.r, str):
            return self.r
        return self.r.get(int(r))

    def names(self) -> set[str]:
        out = {n for n in (self.hr, self.mr) if n}
        if isinstance(self.r, str):
            out.add(self.r)
        elif self.r:
            out.update(self.r.values())
        return out


def _parse(setting: str) -> tuple[int, int]:
    a, b = setting.split("&")
    return int(a), int(b)


def _diff(acc: Mapping[str, Mapping[str, float]], model: str, base: str | None, setting: str):
    if base is None or base not in acc or setting not in acc[base] or setting not in acc[model]:
        return None
    return 100.0 * (acc[model][setting] - acc[base][setting])


def baseline_of(key: str, setting: str, baselines: GainBaselines) -> str | None:
    """The baseline row a gain ``key`` at ``setting`` is measured against."""
    if key in ("cross_vs_hr", "same_vs_hr"):
        return baselines.hr
    if key == "cross_vs_mr":
        return baselines.mr
    return baselines.for_resolution(_parse(setting)[0])


def compute_gains(
    acc: Mapping[str, Mapping[str, float]],
    baselines: GainBaselines,
    canonical: int | None = None,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """``acc[model][setting] -> accuracy`` into ``gains[model][setting][gain_key] -> points``.

    Cross-resolution settings get ``cross_vs_hr`` / ``cross_vs_mr``; same-resolution settings
    get ``same_vs_hr`` / ``same_vs_r`` (``S&S``, with ``canonical`` given, gets only
    ``same_vs_hr``: phi_r at S is phi_hr). Baselines are not compared with themselves.
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for model, row in acc.items():
        out[model] = {}
        for setting in row:
            r1, r2 = _parse(setting)
            if r1 != r2:
                keys: tuple[str, ...] = ("cross_vs_hr", "cross_vs_mr")
            else:
                keys = ("same_vs_hr", "same_vs_r") if r1 != canonical else ("same_vs_hr",)
            g: dict[str, float | None] = {}
            for key in keys:
                base = baseline_of(key, setting, baselines)
                if base and model != base:
                    g[key] = _diff(acc, model, base, setting)
            out[model][setting] = g
    return out


def paired_fold_error(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    """Standard error (points) of ``a - b`` from two models' per-fold accuracies on the same
    folds; ``None`` where either is missing or the fold counts differ (or are below two)."""
    if a is None or b is None or not len(a) == len(b) > 1:
        return None
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return float(100.0 * d.std(ddof=1) / np.sqrt(len(d)))


def paired_gain_errors(
    gains: Mapping[str, Mapping[str, Mapping[str, float | None]]],
    folds: Mapping[str, Mapping[str, Sequence[float]]],
    baselines: GainBaselines,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Standard error (points) of each gain, from the per-fold accuracy differences.

    Both models are scored on the same pairs split into the same folds, so the fold-wise
    difference is a paired sample: its standard error is much smaller than either model's
    fold std, and a gain of more than about twice it is resolved by the test set. ``None``
    where a cell lacks fold accuracies (or the folds differ in number).
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for model, per_setting in gains.items():
        out[model] = {}
        for setting, g in per_setting.items():
            out[model][setting] = {}
            for key, value in g.items():
                base = baseline_of(key, setting, baselines)
                a = folds.get(model, {}).get(setting)
                b = folds.get(base, {}).get(setting) if base else None
                out[model][setting][key] = None if value is None else paired_fold_error(a, b)
    return out


def mean_gains(gains: Mapping[str, Mapping[str, Mapping[str, float | None]]]) -> dict:
    """Per model and gain key, the mean over the settings where that gain exists."""
    out: dict[str, dict[str, float]] = {}
    for model, per_setting in gains.items():
        sums: dict[str, list[float]] = {}
        for g in per_setting.values():
            for k, v in g.items():
                if v is not None:
                    sums.setdefault(k, []).append(v)
        out[model] = {k: sum(v) / len(v) for k, v in sums.items()}
    return out
