"""How far apart the two k-fold accuracy protocols are, and (optionally) parity with insightface.

Part 1 simulates what a user sees: L2-normalised embeddings of pairs (genuine = anchor plus
noise, impostor = unrelated), cosine scores, and btnet's ``kfold_accuracy`` under
``protocol="insightface"`` and ``"exact"`` on the same scores; it prints the difference
(insightface minus exact, in points) over many sets of 600 and 6,000 pairs.

Part 2, with ``--insightface-verification PATH`` (``recognition/arcface_torch/eval/
verification.py`` of a deepinsight/insightface checkout), runs insightface's own
``calculate_roc`` and ``calculate_val`` on the same embeddings and checks that btnet's
per-fold accuracies and VAL@FAR equal them exactly. The functions are read out of that file
with ``ast`` (its mxnet import is not needed), and ``interp1d(kind="slinear")`` is given the
behaviour of scipy 1.9.0 and earlier (degree-1 B-spline on knots ``[x0, x..., x_last]``), because current
scipy refuses the repeated FAR values ``calculate_val`` passes it.

    python benchmarks/verification_protocols.py --sets 20
    python benchmarks/verification_protocols.py --sets 20 \\
        --insightface-verification ../insightface/recognition/arcface_torch/eval/verification.py
"""

from __future__ import annotations

import argparse
import ast
import time
import types

import numpy as np

from btnet.evaluation.metrics_verification import kfold_accuracy, val_at_far
from btnet.inference.encoding import l2_normalize

NEEDED = ("LFold", "calculate_roc", "calculate_accuracy", "calculate_val", "calculate_val_far")


def simulated_pairs(n: int, rng: np.random.Generator, noise_range: tuple[float, float],
                    dim: int = 64):
    """Unit embeddings of n pairs, alternating genuine/impostor in blocks like LFW's folds;
    the genuine pairs' noise level is drawn per set (higher: a weaker model)."""
    same = np.tile(np.repeat([True, False], max(1, n // 20)), 20)[:n]
    noise = rng.uniform(*noise_range)
    a = rng.standard_normal((n, dim))
    b = np.where(same[:, None], a + noise * rng.standard_normal((n, dim)),
                 rng.standard_normal((n, dim)))
    return l2_normalize(a, dtype=np.float64), l2_normalize(b, dtype=np.float64), same


def load_insightface(path: str) -> types.SimpleNamespace:
    """insightface's evaluation functions from their source file, with scipy 1.9.0's interp1d."""
    import sklearn
    from scipy.interpolate import BSpline
    from sklearn.decomposition import PCA
    from sklearn.model_selection import KFold

    class LegacySlinear:
        def __init__(self, x, y, kind="slinear"):
            x = np.asarray(x, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64)
            order = np.argsort(x, kind="mergesort")
            x, y = x[order], y[order]
            self.spline = BSpline.construct_fast(np.r_[x[0], x, x[-1]],
                                                 np.ascontiguousarray(y), 1)

        def __call__(self, at):
            return self.spline(at)

    tree = ast.parse(open(path, encoding="utf-8").read())
    keep = [node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in NEEDED]
    missing = set(NEEDED) - {node.name for node in keep}
    if missing:
        raise SystemExit(f"{path}: {sorted(missing)} not found")
    namespace = {"np": np, "sklearn": sklearn, "PCA": PCA, "KFold": KFold,
                 "interpolate": types.SimpleNamespace(interp1d=LegacySlinear)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    return types.SimpleNamespace(**{name: namespace[name] for name in NEEDED})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=20, help="score sets per size")
    ap.add_argument("--sizes", default="600,6000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", default="3,8",
                    help="range of the genuine pairs' noise (3..8: accuracy about 75-97 %%)")
    ap.add_argument("--insightface-verification", default=None, metavar="PATH")
    args = ap.parse_args()
    ref = load_insightface(args.insightface_verification) if args.insightface_verification else None
    rng = np.random.default_rng(args.seed)
    noise_range = tuple(float(x) for x in args.noise.split(","))
    for n in [int(x) for x in args.sizes.split(",")]:
        diffs, accs, seconds, mismatches = [], [], 0.0, 0
        for _ in range(args.sets):
            a, b, same = simulated_pairs(n, rng, noise_range)
            cos = np.sum(a * b, axis=1)
            t0 = time.perf_counter()
            ins = kfold_accuracy(cos, same, 10, "insightface")
            seconds += time.perf_counter() - t0
            exact = kfold_accuracy(cos, same, 10, "exact")
            diffs.append(100 * (ins.mean - exact.mean))
            accs.append(100 * exact.mean)
            if ref is not None:
                _, _, acc = ref.calculate_roc(np.arange(0, 4, 0.01), a, b, same, nrof_folds=10)
                val, val_std, far = ref.calculate_val(np.arange(0, 4, 0.001), a, b, same, 1e-3,
                                                      nrof_folds=10)
                mine = val_at_far(cos, same, 1e-3, 10)
                same_acc = np.array_equal(acc, ins.fold_accuracies)
                same_val = (val, val_std, far) == (mine["val_mean"], mine["val_std"],
                                                   mine["far_mean"])
                mismatches += int(not (same_acc and same_val))
        d = np.array(diffs)
        print(f"{n} pairs, {args.sets} sets: insightface - exact = {d.min():+.2f} .. "
              f"{d.max():+.2f} points (mean {d.mean():+.3f}), {int((d != 0).sum())} sets "
              f"differ (accuracy {min(accs):.1f}-{max(accs):.1f} %); insightface kfold_accuracy "
              f"{1000 * seconds / args.sets:.1f} ms per set")
        if ref is not None:
            print(f"  parity with insightface's calculate_roc / calculate_val: "
                  f"{args.sets - mismatches} of {args.sets} sets identical")


if __name__ == "__main__":
    main()
