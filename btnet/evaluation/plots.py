"""PNG figures with matplotlib's Agg backend (no display needed).

ROC curves, TPIR-FPIR curves, accuracy against resolution, the cost figures (accuracy against
MACs and against stored parameters: the paper's Figures 5 and 6) and the interpolation-error
curve of Figure 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Curve = tuple[Sequence[float], Sequence[float]]


def _save(fig, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _log_curve(x: Sequence[float], y: Sequence[float], floor: float) -> tuple[np.ndarray, ...]:
    """Drop points at x=0, which a log axis cannot show, but keep the curve's start at ``floor``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = x > 0
    if not keep.any():
        return np.array([floor]), np.array([y.max() if len(y) else 0.0])
    return np.maximum(x[keep], floor), y[keep]


def plot_roc(curves: Mapping[str, Curve], path: str | os.PathLike, title: str = "ROC") -> Path:
    """TAR against FAR (log scale), one line per label."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    floor = 1e-6
    for label, (far, tar) in curves.items():
        x, y = _log_curve(far, tar, floor)
        ax.step(x, y, where="post", label=label)
    ax.set_xscale("log")
    positive = [v for far, _ in curves.values() for v in far if v > 0]
    ax.set_xlim(left=max(floor, min(positive, default=floor)), right=1.0)
    ax.set_xlabel("FAR")
    ax.set_ylabel("TAR")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_tpir_fpir(
    curves: Mapping[str, Curve], path: str | os.PathLike, title: str = "TPIR-FPIR", rank: int = 20
) -> Path:
    """TPIR at rank ``rank`` against FPIR (linear scale as SurvFace plots it)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for label, (fpir, tpir) in curves.items():
        ax.plot(fpir, tpir, label=label)
    ax.set_xlabel("FPIR")
    ax.set_ylabel(f"TPIR @ rank {rank}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_accuracy_vs_resolution(
    series: Mapping[str, Mapping[str, Mapping[int, float]]],
    path: str | os.PathLike,
    title: str = "Accuracy vs resolution",
    ylabel: str = "accuracy (%)",
) -> Path:
    """One panel per group (e.g. ``"S&r"`` cross, ``"r&r"`` same), one line per model.

    ``series[group][model][r] -> value``.
    """
    groups = list(series)
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5 * max(1, len(groups)), 4),
                             squeeze=False)
    # one colour per model across all panels, so a reader can follow a model from one to the next
    models: list[str] = []
    for group in groups:
        models += [m for m in series[group] if m not in models]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {m: cycle[i % len(cycle)] for i, m in enumerate(models)}
    for ax, group in zip(axes[0], groups):
        ticks: set[int] = set()
        for model, pts in series[group].items():
            rs = sorted(pts)
            ticks.update(rs)
            ax.plot(rs, [pts[r] for r in rs], marker="o", label=model, color=colour[model])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(r) for r in sorted(ticks)])
        ax.minorticks_off()
        ax.set_xlabel("resolution r (pixels)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {group}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


@dataclass
class CostPoint:
    """One model in a cost figure: its cost (MACs or stored parameters) and its accuracy."""

    label: str
    cost: float
    accuracy: float


def plot_cost(
    points: Sequence[CostPoint],
    path: str | os.PathLike,
    xlabel: str = "GMACs",
    ylabel: str = "accuracy (%)",
    title: str = "Accuracy vs cost",
    log_x: bool = False,
) -> Path:
    """Scatter of accuracy against cost with labels: Figures 5 (MACs) and 6 (parameters)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for p in points:
        ax.scatter([p.cost], [p.accuracy], s=36)
        ax.annotate(p.label, (p.cost, p.accuracy), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def plot_interpolation(
    errors: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    ylabel: str = "error",
    title: str = "Interpolation error vs resolution",
) -> Path:
    """Figure 1: error of the down-then-up-sampled face against its resolution."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for label, pts in errors.items():
        rs = sorted(pts)
        ax.plot(rs, [pts[r] for r in rs], marker="o", label=label)
    ax.set_xlabel("resolution r (pixels)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(errors) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_coupling_points(points: Sequence[Mapping], canonical: int,
                         path: str | os.PathLike) -> Path:
    """Figure 7: accuracy at S&r against stored parameters, one line per r, each point
    labelled with the unit its branch couples after (``points``: r, unit, stored_params and
    accuracy per setting, as ``btnet reproduce figure7`` records them)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in sorted({p["r"] for p in points}):
        pts = [p for p in points if p["r"] == r]
        xs = [p["stored_params"] / 1e6 for p in pts]
        ys = [100 * p["accuracy"].get(f"{canonical}&{r}", float("nan")) for p in pts]
        ax.plot(xs, ys, "o-", label=f"{canonical}&{r}")
        for x, y, p in zip(xs, ys, pts):
            ax.annotate(p["unit"], (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("stored parameters (M)")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title("Coupling point: deeper branches store more")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
