"""Gallery search time vs gallery size: faiss IndexFlatIP vs the exact NumPy path.

Usage::

    python benchmarks/gallery_search.py [--dim 128] [--queries 100] [--k 20] [--max-exp 6]

Sizes are 10^3 ... 10^max-exp random unit vectors (float32). Memory is the gallery itself
(10^6 x 128 x 4 B = 0.5 GB by default, 2 GB at ``--dim 512``; faiss holds a copy) plus a chunk of scores: both backends
are exact, and the benchmark checks they return the same neighbours. Times are per query batch,
best of ``--repeat`` runs, building the faiss index included (btnet builds it per search call);
the search-only column excludes that copy. Pin BLAS threads for a fair comparison:
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/...``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from btnet.deployment.search import faiss_available, topk_faiss, topk_numpy
from btnet.inference.encoding import l2_normalize


def _unit(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    return l2_normalize(rng.standard_normal((n, d), dtype=np.float32))


def _best(fn, repeat: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--max-exp", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / faiss threads")
    args = ap.parse_args()
    have_faiss = faiss_available()
    if have_faiss:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    q = _unit(args.queries, args.dim, rng)
    print(f"{args.queries} queries, k={args.k}, dim {args.dim}, {args.threads} thread(s)")
    print(f"{'gallery':>9} {'numpy ms':>10} {'faiss ms':>10} {'(search only)':>14} {'same':>5}")
    for e in range(3, args.max_exp + 1):
        g = _unit(10**e, args.dim, rng)
        tn, (sn, i_n) = _best(lambda g=g: topk_numpy(g, q, args.k), args.repeat)
        if have_faiss:
            tf, (sf, i_f) = _best(lambda g=g: topk_faiss(g, q, args.k), args.repeat)
            index = faiss.IndexFlatIP(args.dim)
            index.add(g)
            ts, _ = _best(lambda index=index: index.search(q, args.k), args.repeat)
            del index
            same = bool(np.array_equal(i_n, i_f))
            print(
                f"{10**e:>9} {tn * 1e3:>10.1f} {tf * 1e3:>10.1f} {ts * 1e3:>14.1f} {str(same):>5}"
            )
        else:
            print(f"{10**e:>9} {tn * 1e3:>10.1f} {'n/a':>10} {'':>5}")
        del g


if __name__ == "__main__":
    main()
