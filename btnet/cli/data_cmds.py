"""``btnet data ...``: pack, inspect, convert and re-index face datasets.

Each sub-command is added by one ``_add_<name>(dsub)`` function listed in ``SUBCOMMANDS``;
another group of data commands only needs a new function and one entry there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _add_pack(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "pack",
        help="pack an image folder root/<identity>/<image> into insightface .rec/.idx/property",
        description="Write OUT_PREFIX.rec, OUT_PREFIX.idx and a property file next to them "
        "(insightface layout, readable without mxnet).",
    )
    p.add_argument("folder", help="image folder root/<identity>/<image>")
    p.add_argument("out_prefix", help="output prefix, e.g. data/train -> data/train.rec")
    p.add_argument("--quality", type=int, default=95,
                   help="JPEG quality for images that must be re-encoded (default 95)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="leave out undecodable images (listed) instead of stopping")
    p.add_argument("--min-images", type=int, default=1,
                   help="leave out identities with fewer images (default 1)")
    p.set_defaults(func=_run_pack)


def _run_pack(args: argparse.Namespace) -> int:
    from btnet.data.pack import pack_folder

    res = pack_folder(args.folder, args.out_prefix, skip_corrupt=args.skip_corrupt,
                      quality=args.quality, min_images=args.min_images)
    size = "x".join(map(str, res.image_size)) if res.image_size else "?"
    print(f"wrote {res.rec_path} ({res.num_images} images, {res.num_classes} identities, "
          f"{size}), {res.idx_path}, {res.property_path}")
    if res.reencoded:
        print(f"re-encoded {res.reencoded} non-RGB-JPEG/PNG image(s) as JPEG q{args.quality}")
    if res.skipped:
        print(f"skipped {len(res.skipped)} corrupt image(s):", file=sys.stderr)
        for path in res.skipped[:20]:
            print(f"  {path}", file=sys.stderr)
    return 0


def _add_inspect(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "inspect",
        help="summarise any supported dataset (identities, images, sizes, images per identity)",
    )
    p.add_argument("path", help="image folder, .rec/prefix, builtin:..., .bin, pairs.txt, "
                   "pair list, open-set folder or QMUL-SurvFace release")
    p.add_argument("--root", default=None, help="image root for pairs.txt / pair lists")
    p.add_argument("--sample", type=int, default=500,
                   help="images whose size is read (0 = all; default 500)")
    p.add_argument("--verify", action="store_true", help="decode every image, count corrupt ones")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from btnet.data.inspect import inspect_dataset

    summary = inspect_dataset(args.path, sample=args.sample, verify=args.verify, root=args.root)
    print(summary.render())
    return 1 if summary.corrupt else 0


def _add_export_bin(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "export-bin",
        help="convert a pair set (pairs.txt over a folder, pair list) to an insightface .bin",
    )
    p.add_argument("pairs", help="pairs.txt, pair list, folder with pairs.txt, or .bin")
    p.add_argument("out", help="output .bin path")
    p.add_argument("--root", default=None, help="image root for the pairs")
    p.set_defaults(func=_run_export_bin)


def _run_export_bin(args: argparse.Namespace) -> int:
    from btnet.data.verification import export_pairs_to_bin, open_pair_set

    pairs = open_pair_set(args.pairs, root=args.root)
    out = export_pairs_to_bin(pairs, args.out)
    print(f"wrote {out} ({len(pairs)} pairs, {int(pairs.issame.sum())} same)")
    return 0


def _add_reindex(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser("reindex", help="rebuild a missing or damaged .idx by scanning the .rec")
    p.add_argument("rec", help="path to the .rec file")
    p.add_argument("--salvage", action="store_true",
                   help="index the intact records before a damaged or truncated part of the "
                   ".rec instead of refusing")
    p.set_defaults(func=_run_reindex)


def _run_reindex(args: argparse.Namespace) -> int:
    from btnet.data.recordio import rebuild_index

    res = rebuild_index(args.rec, salvage=args.salvage)
    print(f"wrote {res.idx_path} ({res.records} records)")
    if res.stopped:
        print(f"salvaged the records before the damage; the rest is lost: {res.stopped}",
              file=sys.stderr)
        if res.dropped_meta:
            print("the identity records were lost too: the index leaves out the meta record "
                  "(key 0), so each image's label is read from its own header", file=sys.stderr)
        return 1
    return 0


def _add_synth(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "synth",
        help="write built-in faces as an image folder, .rec, .bin or open-set folder",
        description="Render built-in procedural faces (docs/builtin-faces.md) to files other "
        "tools can read. SPEC is builtin[:train|test][,ids=..,per_id=..,size=..,seed=..].",
    )
    p.add_argument("out", help="output folder (folder/openset), prefix (rec) or .bin path")
    p.add_argument("--format", choices=("folder", "rec", "bin", "openset"), default="folder")
    p.add_argument("--spec", default=None,
                   help="built-in spec (default builtin:train; builtin:test for bin/openset)")
    p.add_argument("--pairs", type=int, default=6000, help="pairs for --format bin (default 6000)")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from btnet.data import synthetic as syn

    spec = args.spec or ("builtin:train" if args.format in ("folder", "rec") else "builtin:test")
    kw = syn.parse_builtin_spec(spec)
    kw.pop("name")
    if args.format in ("folder", "rec"):
        ds = syn.SyntheticFaces(**kw)
        if args.format == "folder":
            syn.export_folder(ds, args.out)
            print(f"wrote {args.out} ({len(ds)} images, {ds.num_classes} identities)")
        else:
            res = syn.export_rec(ds, args.out)
            print(f"wrote {res.rec_path} ({res.num_images} images, {res.num_classes} identities)")
        return 0
    ids, per_id = kw.pop("num_identities"), kw.pop("images_per_identity")
    if args.format == "bin":
        pairs = syn.builtin_pairs(ids, per_id, num_pairs=args.pairs, **kw)
        print(f"wrote {syn.export_bin(pairs, args.out)} ({len(pairs)} pairs)")
        return 0
    from btnet.data.openset import write_openset

    unmated = max(1, ids // 3)
    proto = syn.builtin_openset(ids - unmated, unmated, per_id, **kw)
    write_openset(args.out, proto)
    print(f"wrote {args.out} (gallery {len(proto.gallery)}, mated {len(proto.mated)}, "
          f"unmated {len(proto.unmated)})")
    return 0


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_pack,
    _add_inspect,
    _add_export_bin,
    _add_reindex,
    _add_synth,
]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``btnet data`` and its sub-commands to ``btnet``."""
    parser = sub.add_parser("data", help="pack, inspect and convert face datasets")
    dsub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    for add in SUBCOMMANDS:
        add(dsub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
