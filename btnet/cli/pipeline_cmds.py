"""``btnet demo`` and ``btnet reproduce``: whole studies as cached, resumable pipelines."""

from __future__ import annotations

import argparse
import time

from btnet.pipeline.options import BRANCH_RECIPES, MR_INITS, STUDY_STAGES


def _add_study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="study folder (default runs/<study>); re-running reuses it")
    p.add_argument("--canonical", type=int, help="canonical size S (56 on CPU, 112 on a GPU)")
    p.add_argument("--arch", help="backbone, e.g. iresnet18, iresnet50, mbf")
    p.add_argument("--width", type=int, help="IResNet base width")
    p.add_argument("--embedding-size", type=int)
    p.add_argument("--trunk-epochs", type=float)
    p.add_argument("--branch-epochs", type=float)
    p.add_argument("--mm-epochs", type=float)
    p.add_argument("--mr-init", choices=MR_INITS,
                   help="how phi_mr trunks (BTNet's trunk) start: from scratch, or from the "
                   "phi_hr trunk fine-tuned with the phi_mr recipe (demo default: hr)")
    p.add_argument("--mr-finetune-epochs", type=float,
                   help="epochs of the phi_mr fine-tuning when --mr-init hr (default 4)")
    p.add_argument("--mr-finetune-lr", type=float,
                   help="learning rate of that fine-tuning (default 0.01)")
    p.add_argument("--branch-recipe", choices=tuple(BRANCH_RECIPES),
                   help="how BTNet's branches train: 'paper' (BCT + branch distillation; the "
                   "reproduce default) or a recipe measured to beat its trunk by more "
                   "(docs/results.md; the demo's default)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, help="torch CPU threads (0: torch's default)")
    p.add_argument("--eval-pairs", type=int,
                   help="verification pairs (default: 20000 on real faces, 3000 built-in; "
                        "the demo uses 5000 of 200 unseen identities)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    from btnet.pipeline.studies import STUDIES

    d = sub.add_parser(
        "demo",
        help="train phi_hr, phi_mr and BTNet on built-in faces and write a Table-1 report",
        description=(
            "The whole method on a laptop: generate built-in faces, train phi_hr, phi_mr and "
            "BTNet branches 7/14/28 on the phi_mr trunk, CPU-sized "
            "IResNet-18, evaluate the Table-1 matrix with gains and the cost table, and write "
            "a report folder (Markdown, PNG, JSON) in under 10 minutes on two cores. The phi_mr "
            "trunk is phi_hr fine-tuned with the phi_mr recipe (--mr-init hr). "
            "Interrupted runs continue where they stopped."
        ),
    )
    _add_study_options(d)
    d.set_defaults(func=_demo)

    r = sub.add_parser(
        "reproduce",
        help="run one of the paper's studies end to end (cached, resumable stages)",
        description=(
            "Run a study of the paper as a pipeline of cached stages: finished stages are "
            "reused, an interrupted one continues from its checkpoint, a changed option "
            "recomputes only what depends on it. Studies: " + ", ".join(STUDIES) + "."
        ),
    )
    r.add_argument("study", choices=sorted(STUDIES))
    r.add_argument("--data", default="builtin",
                   help="'builtin' or a data root with lfw/ and celeba/ (e.g. ../shared/data)")
    r.add_argument("--cache", default="runs/cache",
                   help="stage cache shared by studies, so table3 reuses table1's trunks "
                   "(default runs/cache)")
    r.add_argument("--stages", help="a comma-separated subset of a study's stages to run ("
                   + "; ".join(f"{k}: {', '.join(v)}" for k, v in STUDY_STAGES.items())
                   + "; trunk_hr_ft with --mr-init hr); the other studies always run all of theirs")
    _add_study_options(r)
    r.set_defaults(func=_reproduce)


def _overrides(args: argparse.Namespace) -> dict:
    keys = ("out", "canonical", "arch", "width", "embedding_size", "trunk_epochs",
            "branch_epochs", "mm_epochs", "mr_init", "mr_finetune_epochs", "mr_finetune_lr",
            "branch_recipe", "batch_size", "lr", "seed", "device", "threads",
            "eval_pairs")
    values = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if args.no_progress:
        values["progress"] = False
    return values


def _demo(args: argparse.Namespace) -> int:
    from btnet.pipeline.demo import demo_options, run_demo

    start = time.perf_counter()
    report = run_demo(demo_options(**_overrides(args)))
    print(f"btnet demo finished in {time.perf_counter() - start:.0f}s; report folder: {report}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import STUDIES

    values = _overrides(args)
    values["study"] = args.study
    values["data"] = args.data
    values["cache"] = args.cache
    if args.stages is not None:  # StudyOptions refuses stages the study does not use
        values["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    start = time.perf_counter()
    report = STUDIES[args.study](StudyOptions(**values))
    print(f"btnet reproduce {args.study} finished in {time.perf_counter() - start:.0f}s; "
          f"report folder: {report}")
    return 0
