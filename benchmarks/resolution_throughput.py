"""Images per second of the resolution pipeline (and of the built-in face generator).

A CPU training step consumes roughly 300 images/s, so one loader process must deliver far
more than that. Single process, single thread, on 112x112 inputs:

    python benchmarks/resolution_throughput.py [--size 112] [--n 2000]
"""

from __future__ import annotations

import argparse
import time

from btnet.data.degradation import SurveillanceDegradation
from btnet.data.resolution import MultiResolutionTransform, make_sampler, sample_rng
from btnet.data.synthetic import SyntheticFaces


def rate(fn, n: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second); the second is what one core can do
    even when the machine is shared."""
    fn(0)  # warm up
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=112, help="canonical size S")
    ap.add_argument("--n", type=int, default=2000, help="images per measurement")
    args = ap.parse_args()
    s, n = args.size, args.n

    faces = SyntheticFaces(64, 32, size=s, seed=0)
    for label in range(64):  # fill the identity cache: steady-state rendering speed
        faces.render(label, 0)
    pool = [faces[i][0] for i in range(256)]

    print(f"resolution transform on {s}x{s} uint8 RGB images (1 process, 1 thread)")
    print(f"{'configuration':38s} {'img/s wall':>10s} {'img/CPU-s':>10s}")
    deg = SurveillanceDegradation()
    configs = [
        ("hr (identity)", "hr", True, None),
        ("fixed:7, restore to S", "fixed:7", True, None),
        ("fixed:14, no restore (branch input)", "fixed:14", False, None),
        ("mr_v1, restore", "mr_v1", True, None),
        ("mr_v2, restore", "mr_v2", True, None),
        ("mr_v3, restore", "mr_v3", True, None),
        ("mr_v1, restore, bicubic down", "mr_v1", True, "bicubic"),
        ("mr_v3, restore, surveillance degr.", "mr_v3", True, deg),
    ]
    for label, name, restore, extra in configs:
        method = extra if isinstance(extra, str) else "area"
        degradation = extra if isinstance(extra, SurveillanceDegradation) else None
        tf = MultiResolutionTransform(
            make_sampler(name, s), s, restore=restore, degradation=degradation, method=method
        )
        w, c = rate(lambda i, tf=tf: tf(pool[i % len(pool)], sample_rng(0, 0, i)), n)
        print(f"{label:38s} {w:10.0f} {c:10.0f}")

    print()
    print("built-in face generator (identity cache warm)")
    for size in sorted({s, 56, 112}):
        ds = SyntheticFaces(64, 1000, size=size, seed=0)
        for label in range(64):
            ds.render(label, 0)
        w, c = rate(lambda i, ds=ds: ds.render(i % 64, 1 + i // 64), max(200, n // 4))
        print(f"{'render ' + str(size) + 'x' + str(size):38s} {w:10.0f} {c:10.0f}")
    cold = SyntheticFaces(200, 1, size=s, seed=1)
    w, c = rate(lambda i: cold.render(i % 200, 0), 199)
    print(f"{'new identity (layer render) ' + str(s):38s} {w:10.0f} {c:10.0f}")


if __name__ == "__main__":
    main()
