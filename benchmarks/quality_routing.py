"""Size routing vs quality routing on the models of ``btnet demo`` (built-in faces).

Finds phi_hr, phi_mr v1 and BTNet among the stage folders of a demo run, copies the BTNet
(calibration writes into model.json; the demo's folder is left alone), calibrates its quality
estimator on the demo's *training* faces, then measures on the demo's test identities:

1. verification, Table 1's cross settings S&7, S&14, S&28 (clean: pixel size = r);
2. verification, the effective-resolution protocol: second image holding r in {7, 14, 28} at a
   pixel size drawn from [r, S] after surveillance degradation; one table per ``--seeds``,
   and one without the degradation (re-sampling only) for the first seed;
3. open-set identification (Table 2's built-in SurvFace-like protocol): phi_hr, phi_mr v1, the
   nine size strategies and quality routing;
4. the same open-set protocol with its probes replaced by effective-resolution probes (per r):
   floor/near/ceil size routing (min = max = avg for square probes) vs quality routing;
5. the cost: estimator MACs and measured time per face beside each path's.

    python benchmarks/quality_routing.py --demo runs/demo --out runs/quality --seeds 0,1,2

Reports go to ``--out`` (report.md per part plus quality_summary.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def find_demo_models(demo: Path, need_btnet: bool = True) -> dict[str, Path]:
    """{'phi_hr', 'phi_mr_v1', 'BTNet'} -> model folders, by the names training recorded."""
    from btnet.io.model_store import read_model_json

    names = {"trunk_hr": "phi_hr", "trunk_mr_v1_from_hr": "phi_mr_v1", "trunk_mr_v1": "phi_mr_v1"}
    found: dict[str, Path] = {}
    for mj in sorted(demo.glob("stages/*/run/model/model.json")):
        data = read_model_json(mj.parent)
        name = data.get("meta", {}).get("name", "")
        if data["kind"] == "btnet":
            found["BTNet"] = mj.parent
        elif name in names:
            found[names[name]] = mj.parent
    missing = {"phi_hr", "phi_mr_v1", *(("BTNet",) if need_btnet else ())} - set(found)
    if missing:
        raise SystemExit(f"{demo}: no finished model for {sorted(missing)} yet")
    return found


def timing(selector, model, faces: list[np.ndarray], reps: int = 3) -> dict:
    """Seconds per face: the estimator, and each path at batch 64 (one thread)."""
    import torch

    from btnet.data.resolution import fit_to
    from btnet.data.transforms import to_tensor
    from btnet.models.cost import cost_report
    from btnet.models.quality import estimator_macs

    torch.set_num_threads(1)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for f in faces:
            selector.select_image(f)
        best = min(best, (time.perf_counter() - t) / len(faces))
    out = {"estimator_s_per_face": best, "estimator_macs": estimator_macs(selector.estimator.size)}
    report = cost_report(model)
    out["paths"] = {}
    for p in report.paths:
        module = model.path(p.resolution).eval()
        x = to_tensor([fit_to(f, p.resolution) for f in faces[:64]])
        best = float("inf")
        with torch.inference_mode():
            module(x)
            for _ in range(reps):
                t = time.perf_counter()
                module(x)
                best = min(best, (time.perf_counter() - t) / len(x))
        out["paths"][p.resolution] = {"macs": p.btnet_macs, "s_per_face": best}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="a btnet demo output folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--btnet", type=Path, default=None,
                    help="a BTNet model folder to use instead of the demo's (e.g. the demo's "
                         "branch config trained again with 'btnet train')")
    ap.add_argument("--seeds", default="0", help="probe seeds of the effective protocol")
    ap.add_argument("--samples", type=int, default=3000, help="calibration samples")
    ap.add_argument("--pairs", type=int, default=5000, help="test pairs (the demo's 5000)")
    ap.add_argument("--test-ids", type=int, default=None,
                    help="test identities (default: the demo's 200; fewer for a smoke run)")
    ap.add_argument("--skip-openset", action="store_true")
    args = ap.parse_args()

    from btnet.data.degradation import SurveillanceDegradation
    from btnet.data.synthetic import builtin_pairs
    from btnet.evaluation.effective_resolution import effective_openset, evaluate_effective_pairs
    from btnet.evaluation.gains import GainBaselines
    from btnet.evaluation.identification import (
        STRATEGIES,
        compare_strategies,
        evaluate_openset,
        selector_factory,
    )
    from btnet.evaluation.report import write_identification_report, write_verification_report
    from btnet.evaluation.verification import evaluate_pairs, parse_settings
    from btnet.inference import load_encoder
    from btnet.inference.quality_routing import QualityRoutedEncoder, calibrate_model
    from btnet.io.model_store import load_model, read_model_json
    from btnet.pipeline.demo import DEMO_DEFAULTS
    from btnet.pipeline.sources import BUILTIN_TEST_OFFSET
    from btnet.training.quality_calibration import CalibrationSpec

    args.out.mkdir(parents=True, exist_ok=True)
    models = find_demo_models(args.demo, need_btnet=args.btnet is None)
    if args.btnet is not None:
        models["BTNet"] = args.btnet
    bt_dir = args.out / "btnet_model"
    if bt_dir.exists():
        shutil.rmtree(bt_dir)
    shutil.copytree(models["BTNet"], bt_dir)
    train_set = read_model_json(models["phi_hr"])["meta"]["train_set"]
    t0 = time.perf_counter()
    selector = calibrate_model(bt_dir, train_set, CalibrationSpec(samples=args.samples, seed=0))
    summary: dict = {"models": {k: str(v) for k, v in models.items()}, "train_set": train_set,
                     "calibration": selector.calibration,
                     "calibration_seconds": time.perf_counter() - t0}
    print("calibrated:", json.dumps(selector.calibration))

    demo = {**DEMO_DEFAULTS, "study": "quality"}
    if args.test_ids:
        demo["builtin_test_ids"] = args.test_ids
    s = int(demo["canonical"])
    seed = 0
    pairs = builtin_pairs(num_identities=demo["builtin_test_ids"],
                          images_per_identity=demo["builtin_test_per_id"],
                          num_pairs=args.pairs, size=s, seed=seed + 1,
                          identity_offset=BUILTIN_TEST_OFFSET)
    size_enc = {name: load_encoder(folder, name=name) for name, folder in
                (("phi_hr", models["phi_hr"]), ("phi_mr_v1", models["phi_mr_v1"]),
                 ("BTNet", bt_dir))}
    quality = QualityRoutedEncoder(size_enc["BTNet"], selector, name="BTNet [quality]")
    encoders = [*size_enc.values(), quality]
    baselines = GainBaselines(hr="phi_hr", mr="phi_mr_v1")
    deg = SurveillanceDegradation()

    # 1. clean cross-resolution settings (pixel size = r)
    settings = parse_settings("S&7,S&14,S&28,S&S", s)
    res = []
    for enc in encoders:
        res += evaluate_pairs(enc, pairs, settings, s, model_name=enc.name, progress=False)
    write_verification_report(res, args.out / "clean", baselines, s, plots=False,
                              title="Clean probes (pixel size = r): size vs quality routing")
    # 2. effective-resolution protocol
    for sd in [int(v) for v in args.seeds.split(",")]:
        res = []
        for enc in encoders:
            res += evaluate_effective_pairs(enc, pairs, [7, 14, 28], s, enc.name, degradation=deg,
                                            seed=sd, progress=False)
        write_verification_report(res, args.out / f"effective_seed{sd}", baselines, s,
                                  plots=False, title="Effective-resolution probes: second image "
                                  "holds r pixels at a pixel size drawn from [r, S]")
    # 2b. the same probes without the degradation (re-sampling only), first seed
    sd = int(args.seeds.split(",")[0])
    res = []
    for enc in encoders:
        res += evaluate_effective_pairs(enc, pairs, [7, 14, 28], s, enc.name, degradation=None,
                                        seed=sd, progress=False)
    write_verification_report(res, args.out / f"effective_clean_seed{sd}", baselines, s,
                              plots=False, title="Effective-resolution probes without "
                              "degradation (down to r, up to W in [r, S])")
    print("verification done", time.perf_counter() - t0)

    if not args.skip_openset:
        from btnet.pipeline.options import StudyOptions
        from btnet.pipeline.sources import resolve_source

        opts = StudyOptions(**demo)
        proto = resolve_source(opts).openset(opts, args.out / "openset_work")
        results = [evaluate_openset(size_enc[n], proto, n, progress=False)
                   for n in ("phi_hr", "phi_mr_v1")]
        results += compare_strategies(selector_factory(size_enc["BTNet"]), proto, STRATEGIES,
                                      "BTNet", progress=False)
        results.append(evaluate_openset(quality, proto, "BTNet", policy="quality",
                                        progress=False))
        write_identification_report(results, args.out / "table2", plots=False,
                                    title=f"Table 2 with quality routing ({proto.name})")
        # 4. the open-set protocol from full-resolution probes made effective-resolution
        from btnet.evaluation.protocol import ProbeSizeDistribution, build_openset_protocol

        full = ProbeSizeDistribution(mean_height=s, mean_width=s, sigma=0.0, min_height=s,
                                     max_height=s, ratio_std=0.0, min_ratio=1.0, max_ratio=1.0)
        clean = build_openset_protocol(args.out / "openset_work" / "faces", seed=0, sizes=full,
                                       degradation=None, gallery_size=s, name="builtin-openset")
        results = []
        for r in (7, 14, 28):
            eff = effective_openset(clean, r, s, deg, seed=0)
            for n in ("phi_hr", "phi_mr_v1"):
                results.append(evaluate_openset(size_enc[n], eff, n, progress=False))
            results += compare_strategies(selector_factory(size_enc["BTNet"]), eff,
                                          ["min/floor", "min/near", "min/ceil"], "BTNet",
                                          progress=False)
            results.append(evaluate_openset(quality, eff, "BTNet", policy="quality",
                                            progress=False))
        write_identification_report(results, args.out / "table2_effective", plots=False,
                                    title="Open-set, probes holding r pixels at [r, S] pixels")
        print("open set done", time.perf_counter() - t0)

    # 5. cost
    faces = [pairs.images[i] for i in range(min(200, len(pairs.images)))]
    summary["cost"] = timing(selector, load_model(bt_dir).model, faces)
    summary["seconds"] = time.perf_counter() - t0
    (args.out / "quality_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary["cost"], indent=2))


if __name__ == "__main__":
    main()
