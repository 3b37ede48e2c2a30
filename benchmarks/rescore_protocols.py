"""Re-score stored models under both k-fold protocols: what a table would say under each.

Evaluates each ``--model`` (a stored-model folder, ``NAME=DIR`` to name its row) on one pair
set at the usual settings, once with ``protocol="exact"`` and once with ``"insightface"``, and
prints both accuracies, their difference and insightface's VAL@FAR=1e-3. ``--set demo`` is the
demo's test set (5,000 pairs of 200 unseen built-in identities, as ``btnet demo`` builds it);
any other value is opened with ``open_pair_set`` (``.bin``, LFW ``pairs.txt``, pair list).

    python benchmarks/rescore_protocols.py --set demo \\
        --model phi_hr=STAGES/train_trunk-<key>/run/model --model BTNet=STAGES/.../run/model
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from btnet.evaluation.verification import default_settings, evaluate_pairs
    from btnet.inference import load_encoder

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR")
    ap.add_argument("--set", default="demo")
    ap.add_argument("--canonical", type=int, default=56)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.set == "demo":
        from btnet.pipeline.demo import demo_options
        from btnet.pipeline.sources import resolve_source

        opts = demo_options()
        pairs = resolve_source(opts).pair_set(opts)
        settings = default_settings(opts.canonical, opts.resolutions)
    else:
        from btnet.data.verification import open_pair_set

        pairs = open_pair_set(args.set)
        settings = default_settings(args.canonical)
    t0 = time.perf_counter()
    names = [s.name for s in settings]
    print(f"{pairs.name}: {len(pairs)} pairs, 10 folds; accuracy % exact / insightface "
          "(difference, points); VAL@FAR=1e-3 %")
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for spec in args.model:
        enc = load_encoder(spec)
        by = {}
        for protocol in ("exact", "insightface"):
            for r in evaluate_pairs(enc, pairs, settings, args.canonical, model_name=enc.name,
                                    progress=False, protocol=protocol):
                by[(protocol, r.setting)] = r
        cells = []
        for s in names:
            if ("exact", s) not in by:
                cells.append("–")
                continue
            e, i = by[("exact", s)], by[("insightface", s)]
            val = i.metrics["val_at_far"]["val_mean"]
            cells.append(f"{100 * e.accuracy_mean:.2f} / {100 * i.accuracy_mean:.2f} "
                         f"({100 * (i.accuracy_mean - e.accuracy_mean):+.2f}); "
                         + ("–" if val is None else f"{100 * val:.1f}"))
        print(f"| {enc.name} | " + " | ".join(cells) + " |")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
