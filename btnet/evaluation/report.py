"""Table-1 style reports: rows = models, columns = settings, with gains; Markdown, CSV, JSON.

:func:`write_verification_report` is the one call a pipeline needs after
:func:`btnet.evaluation.verification.evaluate_verification`: it writes ``report.md``,
``results.csv``, ``results.json`` and (optionally) ROC and accuracy-vs-resolution PNGs.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from btnet.evaluation.gains import GAIN_KEYS, GainBaselines, compute_gains, paired_gain_errors
from btnet.evaluation.metrics_verification import PROTOCOL_DESCRIPTIONS
from btnet.evaluation.verification import VerificationResult

GAIN_LABELS = {
    "cross_vs_hr": "cross-res. gain vs phi_hr (eq. 4)",
    "cross_vs_mr": "cross-res. gain vs phi_mr (eq. 4)",
    "same_vs_hr": "same-res. gain vs phi_hr (eq. 5)",
    "same_vs_r": "same-res. gain vs phi_r (eq. 5)",
}


def _ordered(values: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def cell_protocol(metrics: Mapping) -> str:
    """The accuracy protocol of one cell; results stored before protocols were named used the
    midpoint rule, now called ``"exact"``."""
    return str(metrics.get("protocol", "exact"))


def _cell_folds(metrics: Mapping) -> int | None:
    if "n_folds" in metrics:
        return int(metrics["n_folds"])
    folds = metrics.get("fold_accuracies")
    return len(folds) if folds else None


def accuracy_caption(protocols: Sequence[str], folds: Sequence[int | None]) -> str:
    """How the accuracies of a table were computed, in words: the fold count and protocol."""
    names = _ordered(list(protocols))
    counts = _ordered([str(k) for k in folds if k is not None])
    k = "/".join(counts) if counts else "?"
    described = "; ".join(f"{p} = {PROTOCOL_DESCRIPTIONS.get(p, p)}" for p in names)
    return (f"Accuracy (%): {k}-fold mean ± std, protocol {' and '.join(names)} "
            f"({described}).")


def build_verification_report(
    results: Sequence[VerificationResult],
    baselines: GainBaselines | None = None,
    canonical: int | None = None,
) -> dict:
    """A JSON-ready report: per dataset, the accuracy table, gains and all per-cell metrics."""
    baselines = baselines or GainBaselines()
    datasets = _ordered([r.dataset for r in results])
    report: dict = {
        "canonical_size": canonical,
        "baselines": {"hr": baselines.hr, "mr": baselines.mr,
                      "r": dict(baselines.r) if isinstance(baselines.r, Mapping) else baselines.r},
        "gain_definition": "percentage points: 100 * (acc_model - acc_baseline) at the same "
                           "setting (see btnet.evaluation.gains)",
        "protocols": {p: PROTOCOL_DESCRIPTIONS.get(p, p) for p in
                      _ordered([cell_protocol(r.metrics) for r in results])},
        "tar_at_far_definition": "exact: best TAR among the operating points of the whole set "
                                 "with FAR <= f (tied scores one point)",
        "val_at_far_definition": "insightface calculate_val: per fold, threshold interpolated "
                                 "at the target FAR on the training folds (grid "
                                 "np.arange(0, 4, 0.001)), VAL and FAR of the test fold; "
                                 "mean and std over folds",
        "datasets": {},
    }
    for ds in datasets:
        rows = [r for r in results if r.dataset == ds]
        models = _ordered([r.model for r in rows])
        settings = _ordered([r.setting for r in rows])
        acc = {m: {r.setting: r.accuracy_mean for r in rows if r.model == m} for m in models}
        std = {m: {r.setting: r.accuracy_std for r in rows if r.model == m} for m in models}
        folds = {m: {r.setting: r.metrics["fold_accuracies"] for r in rows
                     if r.model == m and r.metrics.get("fold_accuracies")} for m in models}
        gains = compute_gains(acc, baselines, canonical)
        protocols = _ordered([cell_protocol(r.metrics) for r in rows])
        report["datasets"][ds] = {
            "protocol": protocols[0] if len(protocols) == 1 else protocols,
            "n_folds": _ordered([_cell_folds(r.metrics) for r in rows]),
            "accuracy_caption": accuracy_caption(protocols,
                                                 [_cell_folds(r.metrics) for r in rows]),
            "models": models,
            "settings": settings,
            "accuracy": acc,
            "accuracy_std": std,
            "gains": gains,
            "gain_se": paired_gain_errors(gains, folds, baselines),
            "cells": [r.to_dict() for r in rows],
        }
    return report


def _fmt_gain(v: float | None, se: float | None = None) -> str:
    if v is None:
        return "–"
    return f"{v:+.2f}" if se is None else f"{v:+.2f} ± {se:.2f}"


def render_markdown(report: Mapping, title: str = "Multi-resolution verification",
                    notes: str = "") -> str:
    """Markdown tables: accuracy (mean ± std, %) then each gain that has values.

    ``notes`` (how the models were trained, say) goes under the title.
    """
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    if report.get("canonical_size"):
        lines.append(f"Canonical size S = {report['canonical_size']}; setting r1&r2: first "
                     "image at r1 x r1, second at r2 x r2.")
        lines.append("")
    for ds, d in report["datasets"].items():
        settings = d["settings"]
        caption = d.get("accuracy_caption") or accuracy_caption(
            [cell_protocol(c["metrics"]) for c in d["cells"]],
            [_cell_folds(c["metrics"]) for c in d["cells"]])
        lines += [f"## {ds}", "", caption, "", "| model | " + " | ".join(settings) + " |",
                  "|---|" + "---:|" * len(settings)]
        for m in d["models"]:
            cells = []
            for s in settings:
                a = d["accuracy"][m].get(s)
                cells.append("–" if a is None else
                             f"{100 * a:.2f} ± {100 * d['accuracy_std'][m][s]:.2f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _tar_val_table(d)
        se_all = d.get("gain_se", {})
        paired = any(e is not None for m in se_all.values() for g in m.values() for e in g.values())
        how = (" (± standard error of the paired per-fold difference: a gain above about twice "
               "it is resolved by this test set)") if paired else ""
        for key in GAIN_KEYS:
            rows = []
            for m in d["models"]:
                vals = [d["gains"][m].get(s, {}).get(key) for s in settings]
                ses = [se_all.get(m, {}).get(s, {}).get(key) for s in settings]
                if any(v is not None for v in vals):
                    rows.append(f"| {m} | " + " | ".join(_fmt_gain(v, e) for v, e in zip(vals, ses))
                                + " |")
            if rows:
                lines += [f"{GAIN_LABELS[key]}, points{how}:", "",
                          "| model | " + " | ".join(settings) + " |",
                          "|---|" + "---:|" * len(settings), *rows, ""]
    return "\n".join(lines)


def _tar_val_table(d: Mapping) -> list[str]:
    """TAR@FAR (exact, whole set) and insightface VAL@FAR per model and setting, in %."""
    cells = [c for c in d["cells"] if c["metrics"].get("tar_at_far") or
             c["metrics"].get("val_at_far")]
    if not cells:
        return []
    fars = sorted({k for c in cells for k in c["metrics"].get("tar_at_far", {})}, key=float)
    val_far = next((c["metrics"]["val_at_far"]["far_target"] for c in cells
                    if c["metrics"].get("val_at_far")), None)
    head = [f"TAR@FAR={f} (exact)" for f in fars]
    if val_far is not None:
        head.append(f"VAL@FAR={val_far:g} (insightface)")
    lines = ["TAR@FAR (exact): best TAR among the whole set's operating points with FAR <= f. "
             "VAL@FAR (insightface calculate_val): threshold interpolated at the FAR on the "
             "training folds, VAL of the test fold, mean ± std over folds. In %.", "",
             "| model | setting | " + " | ".join(head) + " |",
             "|---|---|" + "---:|" * len(head)]
    for c in cells:
        m = c["metrics"]
        row = [f"{100 * m['tar_at_far'][f]:.2f}" if f in m.get("tar_at_far", {}) else "–"
               for f in fars]
        if val_far is not None:
            v = m.get("val_at_far") or {}
            row.append(f"{100 * v['val_mean']:.2f} ± {100 * v['val_std']:.2f}"
                       if v.get("val_mean") is not None else "– " + v.get("undefined", ""))
        lines.append(f"| {c['model']} | {c['setting']} | " + " | ".join(row) + " |")
    return lines + [""]


def write_csv(report: Mapping, path: str | os.PathLike) -> Path:
    """Long format: one row per dataset x model x setting, gains and TAR@FAR as columns."""
    fars = sorted({k for d in report["datasets"].values() for c in d["cells"]
                   for k in c["metrics"].get("tar_at_far", {})}, key=float)
    header = ["dataset", "model", "setting", "r1", "r2", "protocol", "n_folds", "accuracy_mean",
              "accuracy_std", *[f"tar@far={f}" for f in fars], "val_far_target", "val_mean",
              "val_std", "val_far_mean", *GAIN_KEYS, *[f"{k}_se" for k in GAIN_KEYS]]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for ds, d in report["datasets"].items():
            for c in d["cells"]:
                g = d["gains"][c["model"]].get(c["setting"], {})
                se = d.get("gain_se", {}).get(c["model"], {}).get(c["setting"], {})
                tars = c["metrics"].get("tar_at_far", {})
                val = c["metrics"].get("val_at_far") or {}
                w.writerow([ds, c["model"], c["setting"], c["r1"], c["r2"],
                            cell_protocol(c["metrics"]), _cell_folds(c["metrics"]) or "",
                            f"{c['accuracy_mean']:.6f}", f"{c['accuracy_std']:.6f}",
                            *[("" if f not in tars else f"{tars[f]:.6f}") for f in fars],
                            val.get("far_target", ""),
                            *[("" if val.get(k) is None else f"{val[k]:.6f}")
                              for k in ("val_mean", "val_std", "far_mean")],
                            *[("" if g.get(k) is None else f"{g[k]:.4f}") for k in GAIN_KEYS],
                            *[("" if se.get(k) is None else f"{se[k]:.4f}") for k in GAIN_KEYS]])
    return p


def write_json(obj: Mapping, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=1, allow_nan=False, default=_json_default))
    return p


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


def verification_plots(report: Mapping, out_dir: str | os.PathLike) -> list[Path]:
    """ROC per dataset x setting (all models) and accuracy vs resolution per dataset."""
    from btnet.evaluation.plots import plot_accuracy_vs_resolution, plot_roc

    out = Path(out_dir)
    paths: list[Path] = []
    canonical = report.get("canonical_size")
    for ds, d in report["datasets"].items():
        safe = _safe(ds)
        for s in d["settings"]:
            curves = {c["model"]: (c["roc"]["far"], c["roc"]["tar"])
                      for c in d["cells"] if c["setting"] == s and c.get("roc")}
            if curves:
                paths.append(plot_roc(curves, out / f"roc_{safe}_{s.replace('&', '-')}.png",
                                      title=f"{ds} {s}"))
        series: dict[str, dict[str, dict[int, float]]] = {}
        for c in d["cells"]:
            r1, r2 = c["r1"], c["r2"]
            if r1 == r2:
                group, r = "r&r", r1
            elif canonical is not None and max(r1, r2) == canonical:
                group, r = "S&r", min(r1, r2)
            else:
                continue
            series.setdefault(group, {}).setdefault(c["model"], {})[r] = 100 * c["accuracy_mean"]
        if series:
            paths.append(plot_accuracy_vs_resolution(series, out / f"acc_vs_res_{safe}.png",
                                                     title=ds))
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_verification_report(
    results: Sequence[VerificationResult],
    out_dir: str | os.PathLike,
    baselines: GainBaselines | None = None,
    canonical: int | None = None,
    plots: bool = True,
    title: str = "Multi-resolution verification",
    notes: str = "",
) -> dict[str, Path | list[Path]]:
    """Write ``report.md``, ``results.csv``, ``results.json`` (and PNGs) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_verification_report(results, baselines, canonical)
    md = out / "report.md"
    md.write_text(render_markdown(report, title, notes))
    written: dict[str, Path | list[Path]] = {
        "markdown": md,
        "csv": write_csv(report, out / "results.csv"),
        "json": write_json(report, out / "results.json"),
    }
    if plots:
        written["plots"] = verification_plots(report, out)
    return written


# --------------------------------------------------------------------------- identification


def render_identification_markdown(results: Sequence, title: str = "Open-set identification"
                                   ) -> str:
    """One table per protocol: rows = model [policy], TPIR@rank at each FPIR, AUC, CMC (%)."""
    lines = [f"# {title}", ""]
    for proto in _ordered([r.protocol for r in results]):
        rows = [r for r in results if r.protocol == proto]
        fpirs = _ordered([k for r in rows for k in r.metrics.get("tpir_at_fpir", {})])
        ranks = _ordered([k for r in rows for k in r.metrics.get("cmc", {})])
        rank = next((r.metrics["rank"] for r in rows if "rank" in r.metrics), None)
        head = ([f"TPIR{rank}@FPIR={f}" for f in fpirs] + (["AUC"] if fpirs else [])
                + [f"rank-{k}" for k in ranks])
        lines += [f"## {proto}", "", "| model | " + " | ".join(head) + " |",
                  "|---|" + "---:|" * len(head)]
        for r in rows:
            m = r.metrics
            cells = [f"{100 * m['tpir_at_fpir'][f]:.2f}" if f in m.get("tpir_at_fpir", {})
                     else "–" for f in fpirs]
            if fpirs:
                cells.append(f"{100 * m['auc']:.2f}" if "auc" in m else "–")
            cells += [f"{100 * m['cmc'][k]:.2f}" if k in m["cmc"] else "–" for k in ranks]
            lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_identification_report(
    results: Sequence,
    out_dir: str | os.PathLike,
    plots: bool = True,
    title: str = "Open-set identification",
) -> dict[str, Path | list[Path]]:
    """``report.md``, ``results.csv``, ``results.json`` and one TPIR-FPIR PNG per protocol."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(render_identification_markdown(results, title))
    fpirs = _ordered([k for r in results for k in r.metrics.get("tpir_at_fpir", {})])
    ranks = _ordered([k for r in results for k in r.metrics.get("cmc", {})])
    csv_path = out / "results.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["protocol", "model", "policy", *[f"tpir@fpir={f}" for f in fpirs], "auc",
                    *[f"cmc@{k}" for k in ranks]])
        for r in results:
            m = r.metrics
            w.writerow([r.protocol, r.model, r.policy or "",
                        *[m.get("tpir_at_fpir", {}).get(f, "") for f in fpirs], m.get("auc", ""),
                        *[m["cmc"].get(k, "") for k in ranks]])
    written: dict[str, Path | list[Path]] = {
        "markdown": md,
        "csv": csv_path,
        "json": write_json({"results": [r.to_dict() for r in results]}, out / "results.json"),
    }
    if plots:
        from btnet.evaluation.plots import plot_tpir_fpir

        pngs = []
        for proto in _ordered([r.protocol for r in results]):
            curves = {r.label: (r.metrics["curve"]["fpir"], r.metrics["curve"]["tpir"])
                      for r in results if r.protocol == proto and "curve" in r.metrics}
            if curves:
                rank = next(r.metrics["rank"] for r in results if r.protocol == proto
                            and "rank" in r.metrics)
                pngs.append(plot_tpir_fpir(curves, out / f"tpir_fpir_{_safe(proto)}.png",
                                           title=proto, rank=rank))
        written["plots"] = pngs
    return written
