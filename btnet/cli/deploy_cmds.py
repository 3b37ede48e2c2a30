"""Deployment commands: ``embed``, ``export onnx``, ``gallery ...``, ``identify``, ``align``.

Thin wrappers over :mod:`btnet.deployment`; every handler returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _open(spec: str, rule: str | None = None):
    """Open an encoder; ``rule`` (``IND/ALLOC``, e.g. ``min/floor``) overrides its routing."""
    from btnet.inference import load_encoder

    encoder = load_encoder(spec)
    if rule:
        from btnet.models import BranchSelector

        if not hasattr(encoder, "with_selector") or len(encoder.paths) < 2:
            raise ValueError(f"{spec}: --selector needs a BTNet (a plain model has one path)")
        ind, _, alloc = rule.partition("/")
        encoder = encoder.with_selector(BranchSelector.from_rule(encoder.paths, ind, alloc or "near"))
    return encoder


def _embed_inputs(encoder, inputs, args):
    from btnet.deployment.embed import collect_images, embed_files

    files = collect_images(inputs)
    if not files:
        raise ValueError("no images found in the given inputs")
    res = embed_files(
        encoder, files, batch_size=args.batch_size, flip=args.flip,
        skip_errors=args.skip_errors, progress=not args.quiet,
    )
    for f, why in res.failed:
        print(f"skipped {f}: {why}", file=sys.stderr)
    return res


def cmd_embed(args: argparse.Namespace) -> int:
    from btnet.deployment.embed import write_embeddings

    encoder = _open(args.model, args.selector)
    res = _embed_inputs(encoder, args.inputs, args)
    out, index = write_embeddings(
        args.output, res, fingerprint=encoder.fingerprint, index_format=args.index_format
    )
    counts: dict[str, int] = {}
    for i in range(len(res.files)):
        counts[res.branch_name(i)] = counts.get(res.branch_name(i), 0) + 1
    routed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"{len(res.files)} embeddings ({encoder.backend}) -> {out}, index {index}; {routed}")
    return 0 if not res.failed else 1


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from btnet.deployment.onnx_export import export_onnx

    manifest = export_onnx(args.model, args.out_dir, opset=args.opset, verify=not args.no_verify)
    data = json.loads(manifest.read_text())
    for e in data["paths"]:
        diff = e["max_abs_diff_vs_torch"]
        d = f", max |onnx - torch| = {diff:.1e}" if diff is not None else ""
        print(f"path {e['resolution']:>4} ({e['kind']}) -> {e['file']}{d}")
    shared = data.get("shared_weights")
    if shared:
        size = sum(t["length"] for t in shared["tensors"].values()) / 2**20
        print(f"trunk weights stored once: {shared['file']} ({size:.1f} MiB, shared by every path)")
    print("routing: " + "; ".join(data["selector"]["rules"]))
    print(f"manifest: {manifest}")
    return 0


def _gallery_model(args, gallery_dir: str) -> str:
    if args.model:
        return args.model
    from btnet.deployment.gallery import _read_manifest

    model = _read_manifest(Path(gallery_dir)).get("model")
    if not model:
        raise ValueError(f"{gallery_dir}: no model recorded; pass --model")
    return model


def cmd_enroll(args: argparse.Namespace) -> int:
    from btnet.deployment.embed import collect_images, embed_files
    from btnet.deployment.gallery import Gallery

    folder = Path(args.gallery)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a gallery folder: give a folder (new or "
                         "holding gallery.json)")
    if not args.model and not (folder / "gallery.json").exists():
        raise ValueError(f"{folder}: a new gallery needs --model")
    if args.chunk < 0:
        raise ValueError(f"--chunk must be >= 0, got {args.chunk}")
    encoder = _open(_gallery_model(args, args.gallery))
    # Check the gallery before spending time on embedding.
    gallery = Gallery.open_or_create(
        args.gallery, fingerprint=encoder.fingerprint, embedding_size=encoder.embedding_size,
        model=encoder.source if encoder.source.startswith("mm:") else str(Path(encoder.source).resolve()),
    )
    files = collect_images(args.inputs)
    if not files:
        raise ValueError("no images found in the given inputs")
    if args.resume:
        done = {str(Path(f).resolve()) for f in gallery.files if f}
        todo = [f for f in files if str(Path(f).resolve()) not in done]
        print(f"resume: {len(files) - len(todo)} of {len(files)} images already enrolled")
        files = todo
        if not files:
            print(f"nothing left to enrol; gallery {len(gallery)} faces")
            return 0
    chunk = args.chunk or len(files)
    enrolled: list[str] = []
    failed: list[tuple[str, str]] = []
    for start in range(0, len(files), chunk):
        res = embed_files(encoder, files[start : start + chunk], batch_size=args.batch_size,
                          flip=args.flip, skip_errors=args.skip_errors, progress=not args.quiet)
        for f, why in res.failed:
            print(f"skipped {f}: {why}", file=sys.stderr)
        failed += res.failed
        if not res.files:
            continue
        labels = [args.label or Path(f).parent.name for f in res.files]
        # Each chunk is committed on its own: a killed run keeps what was done (--resume).
        shard = gallery.append(
            res.embeddings, labels, source_sizes=res.sizes, paths=res.paths, files=res.files
        )
        enrolled += labels
        if len(files) > chunk:
            print(f"committed {start + len(res.files) + len(res.failed)}/{len(files)} images "
                  f"({shard})")
    if not enrolled:
        raise ValueError("no image could be read; nothing enrolled")
    print(
        f"enrolled {len(enrolled)} faces of {len(set(enrolled))} identities into {args.gallery} "
        f"({len(gallery.manifest['shards'])} shards); gallery now {len(gallery)} faces, "
        f"{len(gallery.identities())} identities"
    )
    return 0 if not failed else 1


def _open_gallery_and_embed(args):
    from btnet.deployment.gallery import Gallery

    encoder = _open(_gallery_model(args, args.gallery))
    gallery = Gallery.open(
        args.gallery, fingerprint=encoder.fingerprint, embedding_size=encoder.embedding_size
    )
    res = _embed_inputs(encoder, args.inputs, args)
    return gallery, res


def cmd_search(args: argparse.Namespace) -> int:
    gallery, res = _open_gallery_and_embed(args)
    found = gallery.search(res.embeddings, args.k, level=args.level, backend=args.backend)
    rows = []
    for i, f in enumerate(res.files):
        cands = [
            {"label": lab, "score": round(float(s), 6)}
            for lab, s in zip(found.labels[i], found.scores[i]) if lab is not None
        ]
        rows.append({"file": f, "path": res.paths[i], "candidates": cands})
        top = ", ".join(f"{c['label']} {c['score']:.3f}" for c in cands)
        print(f"{f}\t[{res.branch_name(i)}]\t{top}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    gallery, res = _open_gallery_and_embed(args)
    t = gallery.calibrate(res.embeddings, args.fpir, backend=args.backend)
    print(
        f"calibrated on {len(res.files)} unmated probes: threshold {t:.4f} for FPIR "
        f"{args.fpir:g} (recomputed as the gallery grows)"
    )
    if len(res.files) * args.fpir < 1:
        print(
            f"warning: {len(res.files)} probes are too few to resolve FPIR {args.fpir:g}; "
            "the threshold is the largest unmated score",
            file=sys.stderr,
        )
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    gallery, res = _open_gallery_and_embed(args)
    decisions = gallery.identify(
        res.embeddings, threshold=args.threshold, target_fpir=args.fpir, backend=args.backend
    )
    rows = []
    for f, d, p in zip(res.files, decisions, res.paths):
        who = d.label if d.label is not None else "unknown"
        print(f"{f}\t{who}\tscore {d.score:.3f}\t(best {d.best_label}, threshold {d.threshold:.3f})")
        rows.append({"file": f, "identity": d.label, "score": d.score, "best": d.best_label,
                     "threshold": d.threshold, "path": p})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from btnet.deployment.gallery import Gallery

    g = Gallery.open(args.gallery)
    sizes = g.source_sizes
    print(f"gallery {args.gallery}: {len(g)} faces, {len(g.identities())} identities, "
          f"{g.embedding_size}-d, {len(g.manifest['shards'])} shards (all checksums ok)")
    print(f"model: {g.manifest.get('model') or '?'} ({g.fingerprint})")
    if len(g):
        print(f"source face sizes: min side {int(sizes.min(1).min())}..{int(sizes.min(1).max())} px")
    cal = g.manifest.get("calibration")
    if cal:
        print(f"calibration: {cal['rows']} unmated probes, target FPIR {cal['target_fpir']:g}, "
              f"threshold now {g.threshold():.4f}")
    quarantined = sorted(p.name for p in (Path(args.gallery) / "quarantine").glob("*"))
    if quarantined:
        print(f"note: {len(quarantined)} damaged file(s) left out by `gallery recover` are in "
              f"{Path(args.gallery) / 'quarantine'} ({', '.join(quarantined[:5])}); their "
              "faces are not searched: re-enrol them (`gallery enroll ... --resume` adds "
              "exactly the images the gallery lacks)", file=sys.stderr)
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from btnet.deployment.gallery import recover_manifest

    rec = recover_manifest(args.gallery, trust_unverified=args.trust_unverified)
    for name in rec.removed_tmp:
        print(f"removed stale temporary file {name}")
    for where, why in rec.quarantined:
        print(f"quarantined {where}: {why}", file=sys.stderr)
    for name in rec.missing:
        print(f"left out {name}: listed in the manifest but missing", file=sys.stderr)
    for name in rec.ignored:
        why = ("never committed (not in the manifest)" if rec.had_manifest
               else "cannot be verified or belongs to another model")
        print(f"left out {name}: {why}", file=sys.stderr)
    if not rec.changed:
        print(f"{args.gallery}: healthy ({rec.rows} faces in {len(rec.kept)} shards, checksums "
              "ok); nothing changed")
        return 0
    print(f"rebuilt {args.gallery}/gallery.json: {rec.rows} faces in {len(rec.kept)} shards"
          + (f" (previous manifest kept as {rec.backup})" if rec.backup else ""))
    print(f"model: {rec.model or 'not recorded (pass --model to enroll/search)'}; "
          f"calibration: {rec.calibration}")
    return 1 if rec.quarantined or rec.missing else 0


def cmd_align(args: argparse.Namespace) -> int:
    from btnet.cli.main import UserError
    from btnet.deployment.align import AlignExtraMissing, align_path, read_annotations

    ann = read_annotations(args.landmarks) if args.landmarks else None
    try:
        report = align_path(
            args.src, args.dst, annotations=ann, size=args.size, keep_native=not args.upsample,
            fmt=args.format, detect=not args.no_detect,
        )
    except AlignExtraMissing as exc:
        raise UserError(str(exc)) from exc
    native = sum(1 for _, _, f in report.written if f.output_size < args.size)
    print(f"aligned {len(report.written)} faces ({native} kept at native size < {args.size}) "
          f"-> {args.dst}; report {Path(args.dst) / 'aligned.tsv'}")
    for rel, why in report.failed:
        print(f"{rel}: {why}", file=sys.stderr)
    if not report.written and report.failed:
        raise ValueError(f"no face aligned ({len(report.failed)} images failed, see above)")
    return 0 if not report.failed else 1


def _embed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flip", action="store_true", help="add the mirrored face's embedding")
    p.add_argument("--skip-errors", action="store_true", help="skip unreadable images")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _gallery_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("gallery", help="gallery folder")
    p.add_argument("inputs", nargs="+", help="images, folders or list files (.txt)")
    p.add_argument("--model", help="stored model or ONNX export (default: the gallery's model)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "numpy"))
    _embed_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to ``btnet``."""
    p = sub.add_parser("embed", help="embed face images of any size (one shared space)")
    p.add_argument("model", help="stored model or run folder, ONNX export folder, arcface_torch "
                   "backbone.pth or encoder spec (NAME=..., mm:7=DIR,...)")
    p.add_argument("inputs", nargs="+", help="images, folders or list files (.txt)")
    p.add_argument("-o", "--output", required=True, help="embeddings file (.npy or .safetensors)")
    p.add_argument("--index-format", default="csv", choices=("csv", "json"))
    p.add_argument("--selector", help="branch selection rule IND/ALLOC, e.g. min/near")
    _embed_options(p)
    p.set_defaults(func=cmd_embed)

    ex = sub.add_parser("export", help="export a stored model for deployment")
    exs = ex.add_subparsers(dest="export_format", metavar="FORMAT")
    p = exs.add_parser("onnx", help="one ONNX graph per path (trunk weights stored once) + manifest")
    p.add_argument("model", help="stored model folder")
    p.add_argument("out_dir")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.set_defaults(func=cmd_export_onnx)

    ga = sub.add_parser("gallery", help="enrol and search a face gallery on disk")
    gas = ga.add_subparsers(dest="gallery_command", metavar="ACTION")
    p = gas.add_parser("enroll", help="enrol faces (label: --label or each image's folder name)")
    _gallery_options(p)
    p.add_argument("--label", help="identity of all given images")
    p.add_argument("--chunk", type=int, default=1000,
                   help="commit a shard every N images, so an interrupted run keeps what it "
                   "enrolled (default 1000; 0: one shard for all)")
    p.add_argument("--resume", action="store_true",
                   help="skip images already enrolled in this gallery (same path): continues "
                   "an interrupted enrolment")
    p.set_defaults(func=cmd_enroll)
    p = gas.add_parser("search", help="top-k identities (or images) for each probe")
    _gallery_options(p)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--level", default="identity", choices=("identity", "image"))
    p.add_argument("--json", help="also write the results as JSON")
    p.set_defaults(func=cmd_search)
    p = gas.add_parser("calibrate", help="open-set threshold from unmated probes for a target FPIR")
    _gallery_options(p)
    p.add_argument("--fpir", type=float, required=True, help="target false-positive ident. rate")
    p.set_defaults(func=cmd_calibrate)
    p = gas.add_parser("info", help="summary of a gallery (verifies every file)")
    p.add_argument("gallery")
    p.set_defaults(func=cmd_info)
    p = gas.add_parser("recover", help="repair a gallery: quarantine damaged shards, rebuild "
                       "gallery.json from the ones that verify")
    p.add_argument("gallery")
    p.add_argument("--trust-unverified", action="store_true",
                   help="without a manifest, also take shards written before shards carried "
                   "their own checksum (their rows must still be finite unit vectors)")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("identify", help="open-set 1:N: who is this, or unknown")
    _gallery_options(p)
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--fpir", type=float, help="target FPIR (default: the calibrated one)")
    grp.add_argument("--threshold", type=float, help="fixed cosine threshold")
    p.add_argument("--json", help="also write the decisions as JSON")
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("align", help="align faces to the ArcFace template at native scale")
    p.add_argument("src", help="image or folder")
    p.add_argument("dst", help="output folder")
    p.add_argument("--landmarks", help="CSV/TSV of five landmarks or boxes per image")
    p.add_argument("--size", type=int, default=112, help="output size S for large faces")
    p.add_argument("--upsample", action="store_true", help="write small faces at S too")
    p.add_argument("--format", default="png", choices=("png", "jpg"))
    p.add_argument("--no-detect", action="store_true", help="only use --landmarks (no dlib)")
    p.set_defaults(func=cmd_align)
