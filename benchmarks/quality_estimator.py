"""How often quality routing picks the path of what a face holds (no recogniser needed).

Calibrates the estimator of ``btnet quality calibrate`` on training faces, then makes test
faces (identities never used in calibration) hold r in {7, 14, 28, S} pixels at a pixel size
drawn from [r, S], clean or with the surveillance degradation (blur, noise, JPEG, each with
probability 0.5), and tallies the path quality routing and size routing (min/near) send them
to. Size routing sees only the pixel size, so it sends most of them to larger paths.

    python benchmarks/quality_estimator.py --train builtin:ids=200,per_id=16,seed=0 \\
        --test builtin --canonical 56
    python benchmarks/quality_estimator.py --train lfw-celeba:../shared/data \\
        --test lfw-devtest:../shared/data --canonical 112
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np


def test_faces(spec: str, canonical: int, n: int) -> list[np.ndarray]:
    """``n`` faces of identities disjoint from any training set."""
    if spec == "builtin":
        from btnet.data.synthetic import BUILTIN_TEST_OFFSET, SyntheticFaces

        faces = SyntheticFaces(max(1, n // 4), 4, size=canonical, seed=1,
                               identity_offset=BUILTIN_TEST_OFFSET)
        return [faces[i][0] for i in range(min(n, len(faces)))]
    if spec.startswith("lfw-devtest:"):
        from pathlib import Path

        from btnet.data.images import read_image
        from btnet.data.protocols import lfw_devtest_people

        people = lfw_devtest_people(Path(spec.split(":", 1)[1]) / "lfw")
        files = sorted(f for fs in people.values() for f in fs)
        pick = np.random.default_rng(0).permutation(len(files))[:n]
        return [read_image(files[i]) for i in sorted(pick)]
    raise SystemExit(f"unknown test faces {spec!r} (builtin or lfw-devtest:ROOT)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="training-set spec for calibration")
    ap.add_argument("--test", required=True, help="builtin or lfw-devtest:ROOT")
    ap.add_argument("--canonical", type=int, default=56)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--out", default=None, help="write the tallies as JSON here")
    args = ap.parse_args()

    from btnet.data.degradation import SurveillanceDegradation
    from btnet.data.effective_resolution import effective_resolution_face
    from btnet.data.resolution import sample_rng
    from btnet.data.training_sets import open_training_set
    from btnet.inference.quality_routing import _Faces
    from btnet.models.selection import BranchSelector
    from btnet.training.quality_calibration import CalibrationSpec, calibrate_quality_selector

    s = args.canonical
    paths = (7, 14, 28, s)
    rule = BranchSelector.from_rule(paths, "min", "near")
    t0 = time.perf_counter()
    selector = calibrate_quality_selector(_Faces(open_training_set(args.train)), rule, s,
                                          CalibrationSpec(samples=args.samples), args.train)
    print(f"calibrated in {time.perf_counter() - t0:.0f} s: {json.dumps(selector.calibration)}")
    faces = test_faces(args.test, s, args.n_test)
    deg = SurveillanceDegradation()
    out: dict = {"calibration": selector.calibration, "test": args.test, "n": len(faces),
                 "rows": []}
    print(f"\n{len(faces)} test faces ({args.test}), S = {s}; share routed to each path (%)\n")
    print("| r held | probes | quality → " + " / ".join(map(str, paths))
          + " | size (min/near) → " + " / ".join(map(str, paths)) + " |")
    print("|---|---|---:|---:|")
    for cond, d in (("clean", None), ("degraded", deg)):
        for r in paths:
            q, z = Counter(), Counter()
            for i, f in enumerate(faces):
                img = effective_resolution_face(f, r, s, sample_rng(11, r, i), d)
                q[selector.select_image(img)] += 1
                z[rule.select(*img.shape[:2])] += 1
            qs = [100 * q[p] / len(faces) for p in paths]
            zs = [100 * z[p] / len(faces) for p in paths]
            out["rows"].append({"r": r, "probes": cond, "quality": qs, "size": zs})
            print(f"| {r} | {cond} | " + " / ".join(f"{v:.0f}" for v in qs) + " | "
                  + " / ".join(f"{v:.0f}" for v in zs) + " |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
