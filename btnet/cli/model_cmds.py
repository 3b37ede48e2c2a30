"""``btnet cost`` and ``btnet model``: what a BTNet costs and what a stored model holds."""

from __future__ import annotations

import argparse
import json

from btnet.models import ARCHITECTURES, BTNet, build_backbone


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cost",
        help="parameters and MACs of BTNet paths vs up-sampling to the trunk",
        description=(
            "Measure, from the real modules, the parameters each BTNet path stores and the "
            "multiply-accumulates of serving an r x r face through its branch versus up-sampling "
            "it to the canonical size and running the trunk (phi_hr)."
        ),
    )
    p.add_argument("--arch", default="iresnet50", choices=ARCHITECTURES)
    p.add_argument("--model", help="a stored model folder instead of --arch (uses its own config)")
    p.add_argument("--input-size", type=int, default=112, help="canonical size S (default 112)")
    p.add_argument("--width", type=int, default=None, help="IResNet base width (default 64)")
    p.add_argument("--embedding-size", type=int, default=512)
    p.add_argument("--resolutions", type=_int_list, default=[7, 14, 28], help="e.g. 7,14,28")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cost)

    m = sub.add_parser("model", help="inspect a stored model folder")
    m.add_argument("path", help="stored model folder (contains model.json)")
    m.set_defaults(func=_model_info)


def _cost(args: argparse.Namespace) -> int:
    from btnet.models.cost import cost_report

    if args.model:
        from btnet.io.model_store import load_model

        stored = load_model(args.model)
        model = stored.model if isinstance(stored.model, BTNet) else BTNet(stored.model, args.resolutions)
    else:
        kwargs = {"input_size": args.input_size, "embedding_size": args.embedding_size}
        if args.width is not None:
            kwargs["width"] = args.width
        model = BTNet(build_backbone(args.arch, **kwargs), args.resolutions)
    report = cost_report(model)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_table())
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from btnet.io.model_store import load_model, read_model_json

    data = read_model_json(args.path)
    stored = load_model(args.path)
    print(f"{args.path}: {data['kind']} {data['backbone']}")
    if isinstance(stored.model, BTNet):
        print(stored.model.extra_repr().replace(", ", "\n  "))
        if stored.selector:
            print("selection policy:")
            for line in stored.selector.describe():
                print(f"  {line}")
    if stored.meta:
        print("meta:", json.dumps(stored.meta, sort_keys=True))
    return 0
