"""Issue 15 item 1: which branch recipe beats its trunk by the most, measured over seeds.

Every variant trains BTNet branches on the same warm-started phi_mr v1 trunk of each seed
(``btnet reproduce table1 --mr-init hr`` trunks, reused from the stage cache) and is scored on
the study's verification pairs (real faces: 20,000 LFW dev-test pairs). Per seed the gain over
the trunk is a paired per-fold difference; across seeds the table gives the mean gain ± the
standard error of the mean over seeds (the spread between training runs, which the per-fold
error does not see: docs/results.md, "What varies between machines").

Variants are branch-config switches plus an epoch count and the trunk (``trunk=hr_ft``: the
same-budget full-resolution control as the trunk, whose S&S is then the control's own); gains
are always against phi_mr v1, the best single trunk at low resolution, e.g.::

    python benchmarks/branch_recipe_ablation.py --data ../shared/data --cache runs/cache \\
        --out runs/branch_ablation --seeds 0 --resolutions 7 \\
        --variant paper: --variant embed:embed_distill_weight=1 \\
        --variant long:epochs=6 --variant degrade:degrade=surveillance

``--resolutions 7`` trains only the 7-pixel path: with a frozen trunk and per-resolution
BatchNorm the paths share no trainable tensor and the 7-pixel faces are drawn first, so the
7-pixel path is the one a 7/14/28 run trains (a cheap screen). Settings scored: S&r and r&r for
each trained r, plus S&S; ``--full`` trains 7/14/28 and scores Table 1's seven settings.
The table also reports the 56&56 gap to phi_hr_ft, the same-budget full-resolution control.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

TRUNKS = ("mr_v1", "hr_ft", "hr")  # phi_mr v1 (BTNet's), phi_hr_ft (the control), phi_hr


def parse_variant(text: str) -> tuple[str, float | None, str, dict]:
    """``name:key=value,...`` -> (name, epochs or None, trunk, branch switches); the keys
    ``epochs`` and ``trunk`` (one of TRUNKS) are the study's, the others branch switches."""
    name, _, rest = text.partition(":")
    epochs: float | None = None
    trunk = "mr_v1"
    switches: dict = {}
    for token in filter(None, (t.strip() for t in rest.split(","))):
        key, _, value = token.partition("=")
        if key == "epochs":
            epochs = float(value)
            continue
        if key == "trunk":
            if value not in TRUNKS:
                raise SystemExit(f"variant {name}: trunk must be one of {', '.join(TRUNKS)}")
            trunk = value
            continue
        try:
            switches[key] = json.loads(value)
        except json.JSONDecodeError:
            switches[key] = value
    return name, epochs, trunk, switches


def paired(a, b) -> tuple[float, float | None]:
    """Points of ``a - b`` and the standard error of the per-fold difference."""
    from btnet.evaluation.gains import paired_fold_error

    return (100 * (a.accuracy_mean - b.accuracy_mean),
            paired_fold_error(a.metrics["fold_accuracies"], b.metrics["fold_accuracies"]))


def main(argv: list[str] | None = None) -> None:
    from btnet.evaluation.verification import parse_settings
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import Study

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--cache", default="runs/cache")
    ap.add_argument("--out", default="runs/branch_ablation")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--variant", action="append", default=[],
                    help="name:switch=value,...,epochs=E (repeatable; 'paper:' = the paper's)")
    ap.add_argument("--resolutions", default="7,14,28")
    ap.add_argument("--full", action="store_true", help="Table 1's seven settings")
    ap.add_argument("--trunk-epochs", type=float, default=6)
    ap.add_argument("--branch-epochs", type=float, default=3)
    ap.add_argument("--mr-finetune-epochs", type=float, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-pairs", type=int, default=None)
    ap.add_argument("--train-only", action="store_true", help="train the stages, score nothing")
    args = ap.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    rs = [int(r) for r in args.resolutions.split(",")]
    variants = [parse_variant(v) for v in (args.variant or ["paper:"])]
    asked = (["S&7", "S&14", "S&28", "7&7", "14&14", "28&28", "S&S"] if args.full else
             [f"S&{r}" for r in rs] + [f"{r}&{r}" for r in rs] + ["S&S"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {name: [] for name, _, _, _ in variants}
    for seed in seeds:
        opts = StudyOptions(study="table1", data=args.data, cache=args.cache, out=str(out),
                            trunk_epochs=args.trunk_epochs, branch_epochs=args.branch_epochs,
                            mr_init="hr", mr_finetune_epochs=args.mr_finetune_epochs,
                            seed=seed, threads=args.threads, progress=False,
                            eval_pairs=args.eval_pairs)
        study = Study(opts, print)
        settings = [s.name for s in parse_settings(asked, opts.canonical)]
        full_res = settings[-1]  # S&S
        trunk = study.mr_trunk("v1")
        control = study.finetuned_hr("hr")
        trunks = {"mr_v1": trunk, "hr_ft": control, "hr": study.trunk("hr")}
        if args.train_only:
            ev_trunk = ev_control = None
        else:
            ev_trunk = study.results([study.evaluate("trunk", trunk, asked)])
            ev_control = study.results([study.evaluate("phi_hr_ft", control, ["S&S"])])
        for name, epochs, on, switches in variants:
            vs = Study(dataclasses.replace(opts, branch_epochs=epochs or args.branch_epochs), print)
            stage = vs.branches(trunks[on], name=f"ablation_{name}", resolutions=rs, **switches)
            if args.train_only:
                continue
            res = vs.results([vs.evaluate(name, stage, asked)])
            by = {r.setting: r for r in res}
            tr = {r.setting: r for r in ev_trunk}
            row = {"seed": seed, "seconds": stage.seconds,
                   "acc": {s: 100 * by[s].accuracy_mean for s in settings},
                   "gain": {s: paired(by[s], tr[s]) for s in settings},
                   "ss_vs_control": paired(by[full_res], ev_control[0])}
            rows[name].append(row)
            print(json.dumps({"variant": name, **row}))
    if args.train_only:
        return
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    lines = ["| variant | seeds | " + " | ".join(f"{s} gain" for s in settings)
             + " | S&S − φ_hr_ft |", "|---|---:|" + "---:|" * (len(settings) + 1)]
    for name, runs in rows.items():
        cells = []
        for s in [*settings, None]:
            g = np.array([r["gain"][s][0] if s else r["ss_vs_control"][0] for r in runs])
            if len(g) > 1:
                cells.append(f"{g.mean():+.2f} ± {g.std(ddof=1) / np.sqrt(len(g)):.2f}")
            else:
                se = runs[0]["gain"][s][1] if s else runs[0]["ss_vs_control"][1]
                cells.append(f"{g.mean():+.2f} (± {se:.2f} fold)")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
