"""Quality-aware routing and the effective-resolution protocol on the command line.

* ``btnet quality calibrate MODEL --images TRAINING_FACES``: fit the effective-resolution
  estimator on training faces and store it in the model folder;
* ``btnet quality estimate MODEL IMAGE...``: what each face holds and where it is routed;
* ``btnet eval verify|identify ... --effective-resolution 7,14,28 --routing size,quality``:
  the options added to the eval commands (registered from :mod:`btnet.cli.eval_cmds`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

ROUTINGS = ("size", "quality")


def _routings(text: str) -> list[str]:
    items = [t for t in text.replace(",", " ").split() if t]
    bad = [t for t in items if t not in ROUTINGS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"routing must be a list of {ROUTINGS}, got {text!r}")
    return items


# --------------------------------------------------------------------------- eval options


def add_effective_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``eval verify`` and ``eval identify``."""
    p.add_argument("--effective-resolution", default=None, metavar="R,R,...",
                   help="probes hold r pixels of detail at a pixel size drawn from [r, S] "
                        "(down-sample to r, degrade, re-sample up), e.g. '7,14,28'; the "
                        "first/gallery image stays at full resolution")
    p.add_argument("--degrade-seed", type=int, default=None,
                   help="seed of the effective-resolution probes (default: --seed, or 0)")
    p.add_argument("--routing", type=_routings, default=["size"],
                   help="BTNet routing to evaluate: 'size', 'quality' or 'size,quality' "
                        "(quality needs 'btnet quality calibrate' first)")


def wants_quality_path(args: argparse.Namespace) -> bool:
    return bool(args.effective_resolution) or "quality" in args.routing


def _degradation(args: argparse.Namespace):
    from btnet.data.degradation import parse_degradation

    spec = getattr(args, "degradation", None)
    return parse_degradation("surveillance" if spec is None else spec)


def _seed(args: argparse.Namespace) -> int:
    if args.degrade_seed is not None:
        return int(args.degrade_seed)
    return int(getattr(args, "seed", 0) or 0)


def _encoders(spec: str, routings: list[str], device: str):
    """(routing, encoder) for each routing this model supports (quality: calibrated BTNets)."""
    from btnet.inference import load_encoder
    from btnet.inference.quality_routing import QualityRoutedEncoder, load_quality_selector

    size_enc = load_encoder(spec, device=device)
    out = []
    if "size" in routings or not hasattr(size_enc, "with_selector"):
        out.append(("size", size_enc))
    if "quality" in routings and hasattr(size_enc, "with_selector"):
        folder = spec.split("=", 1)[1] if "=" in spec.split(":", 1)[0] else spec
        selector = load_quality_selector(folder)
        if selector is None:
            raise ValueError(f"{folder}: no quality calibration stored; run 'btnet quality "
                             f"calibrate {folder} --images TRAINING_FACES' first")
        out.append(("quality", QualityRoutedEncoder(size_enc, selector,
                                                    name=f"{size_enc.name} [quality]")))
    return out


def verify_with_quality(args: argparse.Namespace) -> int:
    """``btnet eval verify`` with --effective-resolution and/or --routing quality."""
    from btnet.cli.eval_cmds import phi_mm_baseline
    from btnet.data.effective_resolution import parse_resolution_list
    from btnet.data.pair_sets import open_pair_set
    from btnet.evaluation.effective_resolution import evaluate_effective_pairs
    from btnet.evaluation.gains import GainBaselines
    from btnet.evaluation.report import write_verification_report
    from btnet.evaluation.verification import evaluate_pairs, parse_settings, subset_pairs

    mm = phi_mm_baseline(args)
    sets = [subset_pairs(open_pair_set(p), args.max_pairs) for p in args.set]
    canonical = args.canonical
    results = []
    seed = _seed(args)
    for spec in args.model:
        for routing, enc in _encoders(spec, args.routing, args.device):
            canonical = canonical or int(enc.canonical)
            kw = dict(n_folds=args.folds, far_targets=args.far, flip=args.flip,
                      batch_size=args.batch_size, progress=not args.no_progress,
                      protocol=None if getattr(args, "protocol", "auto") == "auto"
                      else args.protocol)
            for ps in sets:
                if args.effective_resolution:
                    rs = parse_resolution_list(args.effective_resolution, canonical)
                    results += evaluate_effective_pairs(enc, ps, rs, canonical, enc.name,
                                                        degradation=_degradation(args),
                                                        seed=seed, **kw)
                else:
                    from btnet.data.degradation import parse_degradation

                    results += evaluate_pairs(enc, ps, parse_settings(args.settings, canonical),
                                              canonical, enc.name,
                                              degradation=parse_degradation(args.degradation),
                                              seed=args.seed, **kw)
            log.info("%s evaluated with %s routing", enc.name, routing)
    baselines = GainBaselines(hr=args.phi_hr, mr=args.phi_mr, r=mm)
    written = write_verification_report(results, args.out, baselines, canonical,
                                        plots=not args.no_plots)
    print(written["markdown"].read_text())
    print(f"wrote {args.out}")
    return 0


def identify_with_quality(args: argparse.Namespace) -> int:
    """``btnet eval identify`` with --effective-resolution and/or --routing quality."""
    from btnet.cli.eval_cmds import identify_options, identify_size_routed, write_identify_report
    from btnet.data.effective_resolution import parse_resolution_list
    from btnet.data.openset import open_openset
    from btnet.evaluation.effective_resolution import effective_openset
    from btnet.evaluation.identification import evaluate_openset

    base = open_openset(args.protocol)
    kw, strategies = identify_options(args)
    results = []
    for spec in args.model:
        for routing, enc in _encoders(spec, args.routing, args.device):
            protocols = [base]
            if args.effective_resolution:
                canonical = int(enc.canonical)
                protocols = [effective_openset(base, r, canonical, _degradation(args), _seed(args))
                             for r in parse_resolution_list(args.effective_resolution, canonical)]
            for proto in protocols:
                if routing == "quality":
                    results.append(evaluate_openset(enc, proto, model_name=enc.inner.name,
                                                    policy="quality", **kw))
                else:
                    results += identify_size_routed(enc, proto, strategies, kw)
    return write_identify_report(results, args)


# --------------------------------------------------------------------------- btnet quality


def cmd_calibrate(args: argparse.Namespace) -> int:
    from btnet.inference.quality_routing import calibrate_model
    from btnet.models.quality import estimator_macs
    from btnet.training.quality_calibration import CalibrationSpec

    spec = CalibrationSpec(samples=args.samples, seed=args.seed, c=args.c,
                           p_degrade=args.p_degrade)
    selector = calibrate_model(args.model, args.images, spec)
    cal = selector.calibration or {}
    print(f"calibrated on {cal.get('source')}: {spec.samples} degraded training faces, "
          f"seed {spec.seed}")
    if "holdout_same_path" in cal:
        print(f"hold-out: {100 * cal['holdout_same_path']:.1f}% routed to the path of the "
              "true r")
    print(f"cost: {estimator_macs(selector.estimator.size) / 1e6:.2f} MMACs per face "
          "(analytic count; compare 'btnet cost --model')")
    for line in selector.describe():
        print(f"  {line}")
    print(f"stored in {Path(args.model) / 'model.json'}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from btnet.data.images import read_image
    from btnet.inference.quality_routing import load_quality_selector

    selector = load_quality_selector(args.model)
    if selector is None:
        raise ValueError(f"{args.model}: no quality calibration stored; run 'btnet quality "
                         "calibrate' first")
    print("image\tHxW\teffective_r\tquality_path\tsize_path")
    for path in args.images:
        img = read_image(path)
        h, w = img.shape[:2]
        print(f"{path}\t{h}x{w}\t{selector.estimate(img):.1f}\t{selector.select_image(img)}\t"
              f"{selector.select(h, w)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("quality", help="quality-aware routing: calibrate, estimate")
    qs = q.add_subparsers(dest="quality_command", metavar="TASK", required=True)
    p = qs.add_parser(
        "calibrate", help="fit the effective-resolution estimator on training faces",
        description="Degrade training faces to a known effective resolution r (blur, noise, "
                    "JPEG, re-sampled to a pixel size in [r, S]), fit the estimator and store "
                    "it in the model folder's model.json. Use training faces, never the "
                    "evaluation set.")
    p.add_argument("model", help="stored BTNet folder (model.json is updated in place)")
    p.add_argument("--images", default=None,
                   help="training faces: builtin:..., an identity folder or a .rec (default: "
                        "the training set recorded in the model's meta)")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--c", type=float, default=1.0,
                   help="inverse regularisation of the logistic regression (default 1)")
    p.add_argument("--p-degrade", type=float, default=0.7,
                   help="share of samples blurred/noised/compressed (default 0.7)")
    p.set_defaults(func=cmd_calibrate)

    p = qs.add_parser(
        "estimate", help="effective resolution and chosen path of face images")
    p.add_argument("model", help="calibrated BTNet folder")
    p.add_argument("images", nargs="+", help="face crops (any size)")
    p.set_defaults(func=cmd_estimate)
