"""``btnet eval ...``, ``btnet protocol openset`` and ``btnet analyze ...``: thin wrappers over
:mod:`btnet.evaluation`.

Models are named by ``--model`` (repeatable): a stored-model folder, ``NAME=DIR`` to name its
report row, or ``mm:7=DIR,14=DIR,...`` for phi_mm; they are loaded one at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.replace(",", " ").split()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.replace(",", " ").split()]


def _load(spec: str, device: str, selector=None):
    from btnet.inference import load_encoder

    return load_encoder(spec, device=device, selector=selector)


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--model", action="append", required=True, metavar="SPEC",
                   help="stored model (DIR, NAME=DIR or mm:7=DIR,...); repeat for several")
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flip", action="store_true", help="fuse embeddings of image and mirror")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-plots", action="store_true")


# --------------------------------------------------------------------------- eval verify


def cmd_verify(args: argparse.Namespace) -> int:
    from btnet.cli.quality_cmds import verify_with_quality, wants_quality_path

    if wants_quality_path(args):
        return verify_with_quality(args)
    from btnet.data.degradation import parse_degradation
    from btnet.data.pair_sets import open_pair_set
    from btnet.evaluation.gains import GainBaselines
    from btnet.evaluation.report import write_verification_report
    from btnet.evaluation.verification import (
        evaluate_verification,
        parse_settings,
        subset_pairs,
    )

    mm = phi_mm_baseline(args)
    sets = [subset_pairs(open_pair_set(p), args.max_pairs) for p in args.set]
    deg = parse_degradation(args.degradation)
    results = []
    canonical = args.canonical
    settings = None
    for spec in args.model:
        enc = _load(spec, args.device)
        if canonical is None:
            canonical = int(enc.canonical)
        if settings is None:
            settings = parse_settings(args.settings, canonical)
        results += evaluate_verification(
            [enc], sets, settings, canonical, n_folds=args.folds, far_targets=args.far,
            flip=args.flip, batch_size=args.batch_size, progress=not args.no_progress,
            degradation=deg, seed=args.seed,
            protocol=None if args.protocol == "auto" else args.protocol)
        del enc
    baselines = GainBaselines(hr=args.phi_hr, mr=args.phi_mr, r=mm)
    written = write_verification_report(results, args.out, baselines, canonical,
                                        plots=not args.no_plots)
    print(written["markdown"].read_text())
    print(f"wrote {args.out}")
    return 0


def phi_mm_baseline(args: argparse.Namespace) -> str | dict[int, str] | None:
    """The phi_mm baseline of ``btnet eval verify``: one report name, or one per resolution
    (``7=NAME,14=NAME``). From ``--phi-mm``, or ``--phi-r``, its old name (the flag names the
    phi_mm baseline, whose member for r is the paper's phi_r)."""
    mm = args.phi_mm
    if args.phi_r is not None:
        if mm is not None:
            raise ValueError("--phi-r is the deprecated name of --phi-mm; give only --phi-mm")
        print("btnet eval verify: --phi-r is deprecated, use --phi-mm", file=sys.stderr)
        mm = args.phi_r
    if mm and "=" in mm:
        return {int(k): v for k, v in (kv.split("=", 1) for kv in mm.split(","))}
    return mm


# --------------------------------------------------------------------------- eval identify


def cmd_identify(args: argparse.Namespace) -> int:
    from btnet.cli.quality_cmds import identify_with_quality, wants_quality_path

    if wants_quality_path(args):
        return identify_with_quality(args)
    from btnet.data.openset import open_openset

    proto = open_openset(args.protocol)
    kw, strategies = identify_options(args)
    results = []
    for spec in args.model:
        enc = _load(spec, args.device)
        results += identify_size_routed(enc, proto, strategies, kw)
        del enc
    return write_identify_report(results, args)


def identify_options(args: argparse.Namespace) -> tuple[dict, list[str] | None]:
    """The keyword arguments of every open-set evaluation, and the strategies asked for."""
    from btnet.evaluation.identification import STRATEGIES

    kw = dict(rank=args.rank, fpir_targets=args.fpir, cmc_ranks=args.cmc,
              gallery_mode=args.gallery, batch_size=args.batch_size, flip=args.flip,
              progress=not args.no_progress)
    strategies = None
    if args.strategies:
        strategies = list(STRATEGIES) if args.strategies == "all" else \
            [s for s in args.strategies.replace(",", " ").split()]
    return kw, strategies


def identify_size_routed(enc, proto, strategies: list[str] | None, kw: dict) -> list:
    """One encoder on one protocol: every asked strategy where it selects branches, else once."""
    from btnet.evaluation.identification import (
        compare_strategies,
        evaluate_openset,
        selector_factory,
    )

    if strategies and hasattr(enc, "with_selector"):
        return compare_strategies(selector_factory(enc), proto, strategies,
                                  model_name=enc.name, **kw)
    if strategies:
        log.info("%s has no branch selection; evaluated once", enc.name)
    return [evaluate_openset(enc, proto, **kw)]


def write_identify_report(results: list, args: argparse.Namespace) -> int:
    from btnet.evaluation.report import write_identification_report

    written = write_identification_report(results, args.out, plots=not args.no_plots)
    print(written["markdown"].read_text())
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- eval templates


def cmd_templates(args: argparse.Namespace) -> int:
    from btnet.evaluation.report import write_json
    from btnet.evaluation.templates import evaluate_templates, open_template_protocol

    proto = open_template_protocol(args.protocol, args.images)
    resolutions = args.resolution or [None]
    results = []
    for spec in args.model:
        enc = _load(spec, args.device)
        for r in resolutions:
            results.append(evaluate_templates(
                enc, proto, far_targets=args.far, rank=args.rank, fpir_targets=args.fpir,
                use_weights=not args.no_weights, resolution=r,
                canonical=int(getattr(enc, "canonical", 112)), batch_size=args.batch_size,
                flip=args.flip, progress=not args.no_progress, convention=args.convention))
        del enc
    args.out.mkdir(parents=True, exist_ok=True)
    write_json({"results": results}, args.out / "results.json")
    lines = template_report_lines(results, args.far, args.convention)
    (args.out / "report.md").write_text("# Template verification (1:1)\n\n" + "\n".join(lines)
                                        + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


def template_report_lines(results: list[dict], fars: list[float], convention: str) -> list[str]:
    """The 1:1 table of ``eval templates``, headed by the convention it was computed under."""
    from btnet.evaluation.metrics_templates import CONVENTION_DESCRIPTIONS

    if convention == "insightface":
        key, head = "tpr_at_nearest_fpr", "TPR@FPR≈{} (insightface)"
    else:
        key, head = "tar_at_far", "TAR@FAR≤{} (NIST)"
    lines = [f"Convention {convention}: {CONVENTION_DESCRIPTIONS[convention]}. In %.", "",
             "| model | r | " + " | ".join(head.format(f"{f:g}") for f in fars) + " |",
             "|---|---|" + "---:|" * len(fars)]
    for res in results:
        vals = res.get("verification", {}).get(key, {})
        lines.append(f"| {res['model']} | {res['resolution'] or 'native'} | "
                     + " | ".join(f"{100 * vals[f'{f:g}']:.2f}" if f"{f:g}" in vals else "–"
                                  for f in fars) + " |")
    return lines


# --------------------------------------------------------------------------- protocol openset


def cmd_protocol_openset(args: argparse.Namespace) -> int:
    from btnet.evaluation.openset_protocol import make_openset_protocol

    out = make_openset_protocol(
        args.root, args.out, n_watchlist=args.watchlist, gallery_per_id=args.gallery_per_id,
        max_mated_per_id=args.max_mated_per_id, max_unmated_per_id=args.max_unmated_per_id,
        max_unmated_ids=args.max_unmated_ids, gallery_size=args.gallery_size,
        degradation=args.degradation, seed=args.seed)
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {out}: watch-list {meta['watchlist_size']} identities, probe size mean "
          f"{meta['probe_size_hw_mean']} (HxW), range {meta['probe_size_hw_min']}.."
          f"{meta['probe_size_hw_max']}")
    return 0


# --------------------------------------------------------------------------- analyze


def cmd_interpolation(args: argparse.Namespace) -> int:
    from btnet.evaluation.interpolation import analyze_interpolation

    written = analyze_interpolation(args.images, args.out, n=args.n,
                                    resolutions=args.resolutions, canonical=args.canonical,
                                    seed=args.seed)
    res = json.loads(written["json"].read_text())
    print(f"{res['n_faces']} faces, S={res['canonical_size']}")
    for r, v in res["per_resolution"].items():
        print(f"  r={r:>4}: MAE {v['mae_mean']:.2f}  RMSE {v['rmse_mean']:.2f}  "
              f"PSNR {v['psnr_mean']:.2f} dB")
    print(f"wrote {args.out}")
    return 0


def cmd_nuisance(args: argparse.Namespace) -> int:
    from btnet.evaluation.nuisance import builtin_groups, folder_groups, nuisance_shares
    from btnet.evaluation.report import write_json

    rows = []
    for source in args.images:
        if source == "builtin":
            groups = builtin_groups(args.identities, args.per_identity, size=args.canonical)
        else:
            groups = folder_groups(source, args.identities, args.per_identity)
        res = nuisance_shares(groups, args.bands, args.canonical)
        res["source"] = source
        rows.append(res)
    print(f"nuisance share (within-identity / total variance) and RMS, S={args.canonical}")
    print(f"{'source':<40} " + " ".join(f"{b:>16}" for b in args.bands))
    for res in rows:
        cells = " ".join(f"{v['share']:>8.3f} {v['rms']:>7.2f}" for v in res["bands"].values())
        print(f"{res['source'][-40:]:<40} {cells}   ({res['identities']} ids, {res['faces']} faces)")
    if args.out:
        print(f"wrote {write_json({'sources': rows}, args.out)}")
    return 0


def cmd_plot_cost(args: argparse.Namespace) -> int:
    from btnet.evaluation.plots import CostPoint, plot_cost

    with open(args.points, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"label", "cost", "accuracy"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{args.points}: need a CSV with columns {sorted(need)}")
    pts = [CostPoint(r["label"], float(r["cost"]), float(r["accuracy"])) for r in rows]
    path = plot_cost(pts, args.out, xlabel=args.xlabel, ylabel=args.ylabel, title=args.title,
                     log_x=args.log_x)
    print(f"wrote {path}")
    return 0


def cmd_plot_verify(args: argparse.Namespace) -> int:
    from btnet.evaluation.report import verification_plots

    report = json.loads(Path(args.results).read_text())
    for p in verification_plots(report, args.out):
        print(f"wrote {p}")
    return 0


# --------------------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``, ``protocol`` and ``analyze`` groups to ``btnet``."""
    from btnet.cli.quality_cmds import add_effective_options

    ev = sub.add_parser("eval", help="evaluate models: verification, 1:N, templates")
    evs = ev.add_subparsers(dest="eval_command", metavar="TASK", required=True)

    p = evs.add_parser("verify", help="multi-resolution 1:1 verification (Table 1)")
    _common(p, "folder for report.md, results.csv, results.json and plots")
    p.add_argument("--set", action="append", required=True, metavar="PATH",
                   help=".bin, LFW pairs.txt (or its folder) or a pair list; repeatable")
    p.add_argument("--settings", default=None,
                   help="e.g. 'S&7,S&14,7&7' (S = canonical size); default: Table 1's seven")
    p.add_argument("--canonical", type=int, default=None,
                   help="canonical size S (default: the first model's)")
    p.add_argument("--folds", type=int, default=10,
                   help="contiguous folds of the k-fold accuracy (1: threshold chosen and "
                        "scored on every pair, as insightface's LFold(1))")
    p.add_argument("--protocol", choices=("auto", "insightface", "exact"), default="auto",
                   help="k-fold accuracy rule: 'insightface' = eval/verification.py exactly "
                        "(squared L2 distance, grid np.arange(0, 4, 0.01), first best "
                        "threshold), the numbers papers report; 'exact' = a threshold between "
                        "every two scores; 'auto' (default): insightface for .bin and LFW "
                        "pairs.txt, exact for other pair lists. The report names it")
    p.add_argument("--far", type=_floats, default=[1e-4, 1e-3, 1e-2, 1e-1],
                   help="FARs for TAR@FAR (exact, over the whole set), e.g. '1e-3,1e-2'; "
                        "insightface's VAL@FAR=1e-3 is reported beside it")
    p.add_argument("--degradation", default=None,
                   help="surveillance degradation of the low-resolution images (e.g. "
                        "'surveillance'); default none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pairs", type=int, default=None, help="N evenly spaced pairs only (quick runs)")
    p.add_argument("--phi-hr", default=None, help="report name of the phi_hr baseline (gains)")
    p.add_argument("--phi-mr", default=None, help="report name of the phi_mr baseline (gains)")
    p.add_argument("--phi-mm", default=None,
                   help="report name of the phi_mm baseline for same-resolution gains (its "
                        "member for r is phi_r), or '7=NAME,14=NAME,...' per resolution")
    p.add_argument("--phi-r", default=None, help=argparse.SUPPRESS)  # deprecated: --phi-mm
    add_effective_options(p)
    p.set_defaults(func=cmd_verify)

    p = evs.add_parser("identify", help="open-set 1:N identification (SurvFace / generic)")
    _common(p, "folder for report.md, results.csv, results.json and TPIR-FPIR plots")
    p.add_argument("--protocol", required=True, help="QMUL-SurvFace release or generic folder")
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--fpir", type=_floats, default=[0.3, 0.2, 0.1, 0.01])
    p.add_argument("--cmc", type=_ints, default=[1, 5, 20])
    p.add_argument("--gallery", choices=("mean", "image"), default="mean",
                   help="per-identity mean feature (SurvFace reference) or every image")
    p.add_argument("--strategies", default=None,
                   help="'all' (Table 2's nine) or e.g. 'min/near,max/ceil'; BTNet models only")
    add_effective_options(p)
    p.set_defaults(func=cmd_identify)

    p = evs.add_parser("templates", help="IJB-C style template 1:1 and 1:N")
    _common(p, "folder for report.md and results.json")
    p.add_argument("--protocol", required=True, help="IJB-C root (meta/) or generic folder")
    p.add_argument("--images", default=None, help="aligned IJB-C images (default: guessed)")
    p.add_argument("--resolution", type=int, action="append", default=None,
                   help="degrade every face to r x r first; repeatable")
    p.add_argument("--far", type=_floats, default=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--fpir", type=_floats, default=[0.3, 0.2, 0.1, 0.01])
    p.add_argument("--no-weights", action="store_true", help="ignore detector-score weights")
    p.add_argument("--convention", choices=("nist", "insightface"), default="nist",
                   help="'nist' (default): unit-length features, TAR at FAR <= f; "
                        "'insightface': features keep their norms (use_norm_score), TPR at "
                        "the nearest FPR, as eval_ijbc.py. The report names it")
    p.set_defaults(func=cmd_templates)

    pr = sub.add_parser("protocol", help="build evaluation protocols from your data")
    prs = pr.add_subparsers(dest="protocol_command", metavar="KIND", required=True)
    p = prs.add_parser("openset", help="a QMUL-SurvFace-like open-set protocol from faces")
    p.add_argument("--root", required=True, help="identity folder: root/<identity>/<image>")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--watchlist", type=int, default=None,
                   help="watch-list size (default: half the identities with >= 2 images)")
    p.add_argument("--gallery-per-id", type=int, default=1)
    p.add_argument("--max-mated-per-id", type=int, default=None)
    p.add_argument("--max-unmated-per-id", type=int, default=None)
    p.add_argument("--max-unmated-ids", type=int, default=None)
    p.add_argument("--gallery-size", type=int, default=None, help="resize gallery faces to this")
    p.add_argument("--degradation", default="surveillance",
                   help="probe degradation spec ('none' for clean down-sampling)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_protocol_openset)

    an = sub.add_parser("analyze", help="analyses and figures")
    ans = an.add_subparsers(dest="analyze_command", metavar="WHAT", required=True)
    p = ans.add_parser("interpolation", help="Figure 1: down-then-up-sampling error per r")
    p.add_argument("--images", required=True, help="folder of aligned faces (any depth)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=100, help="number of faces (>= 100 for Figure 1)")
    p.add_argument("--resolutions", type=_ints, default=[7, 14, 21, 28, 42, 56, 84])
    p.add_argument("--canonical", type=int, default=112)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_interpolation)

    p = ans.add_parser("nuisance", help="how much of the appearance at each scale is per-image "
                       "nuisance (within-identity share of variance): real vs built-in faces")
    p.add_argument("images", nargs="+",
                   help="folders of identity sub-folders of aligned faces, or 'builtin'")
    p.add_argument("--identities", type=int, default=150)
    p.add_argument("--per-identity", type=int, default=6)
    p.add_argument("--canonical", type=int, default=56)
    p.add_argument("--bands", nargs="+", default=["thumb7", "thumb14", "detail14", "detail28"])
    p.add_argument("--out", type=Path, help="also write the numbers as JSON")
    p.set_defaults(func=cmd_nuisance)

    pl = ans.add_parser("plot", help="figures from stored results")
    pls = pl.add_subparsers(dest="plot_command", metavar="FIGURE", required=True)
    p = pls.add_parser("cost", help="accuracy vs cost (Figures 5 and 6) from a CSV")
    p.add_argument("--points", required=True, help="CSV with columns label,cost,accuracy")
    p.add_argument("--out", required=True, type=Path, help="PNG path")
    p.add_argument("--xlabel", default="GMACs")
    p.add_argument("--ylabel", default="accuracy (%)")
    p.add_argument("--title", default="Accuracy vs cost")
    p.add_argument("--log-x", action="store_true")
    p.set_defaults(func=cmd_plot_cost)
    p = pls.add_parser("verify", help="ROC and accuracy-vs-resolution from results.json")
    p.add_argument("--results", required=True, help="results.json of 'btnet eval verify'")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_plot_verify)
