"""One place for the usage examples every ``btnet`` command shows at the end of its ``--help``.

Why one table instead of an epilog per parser: a command added without an example is caught
by a single test (``tests/test_cli_help.py`` walks every parser), and the examples can be read
side by side to keep them consistent. A parser whose own epilog already holds an ``examples:``
block (``btnet train`` lists its recipes too) keeps it and is not given a second one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES: dict[str, list[str]] = {
    "demo": ["btnet demo", "btnet demo --mr-init scratch --out runs/demo"],
    "reproduce": [
        "btnet reproduce table1 --data ../shared/data",
        "btnet reproduce figure7 --data ../shared/data --cache runs/cache --out runs/figure7",
    ],
    "eval": ["btnet eval verify --model runs/btnet/model --set lfw.bin --out reports/lfw"],
    "eval verify": [
        "btnet eval verify --model runs/btnet/model --set ../shared/data/lfw/pairs.txt "
        "--out reports/lfw",
        "btnet eval verify --model BTNet=runs/btnet/model --model phi_hr=runs/hr/model "
        "--phi-hr phi_hr --set lfw.bin --folds 10 --out reports/table1",
        "btnet eval verify --model runs/btnet/model --set pairs.txt --effective-resolution "
        "7,14,28 --degrade-seed 0 --routing size,quality --out reports/effective",
    ],
    "eval identify": [
        "btnet eval identify --model runs/btnet/model --protocol proto/ --strategies all "
        "--out reports/openset",
        "btnet eval identify --model runs/btnet/model --protocol proto/ --strategies all "
        "--routing size,quality --effective-resolution 7,14,28 --out reports/openset_eff",
    ],
    "eval templates": [
        "btnet eval templates --model runs/btnet/model --protocol IJBC/ --images IJBC/aligned "
        "--out reports/ijbc",
    ],
    "protocol": ["btnet protocol openset --root faces/ --out proto/"],
    "protocol openset": [
        "btnet protocol openset --root ../shared/data/celeba/images --out protocols/celeba-os "
        "--seed 0",
    ],
    "analyze": ["btnet analyze nuisance ../shared/data/lfw/images builtin"],
    "analyze interpolation": [
        "btnet analyze interpolation --images ../shared/data/lfw/images --n 200 --out reports/fig1",
    ],
    "analyze nuisance": [
        "btnet analyze nuisance ../shared/data/lfw/images builtin --out reports/nuisance.json",
    ],
    "analyze plot": ["btnet analyze plot verify --results reports/table1/results.json "
                     "--out reports/table1"],
    "analyze plot cost": ["btnet analyze plot cost --points cost.csv --xlabel GMACs "
                          "--out reports/fig5.png"],
    "analyze plot verify": ["btnet analyze plot verify --results reports/table1/results.json "
                            "--out reports/table1"],
    "embed": [
        "btnet embed runs/btnet/model photos/ more.txt one.jpg -o emb.npy",
        "btnet embed runs/btnet/onnx photos/ -o emb.safetensors --index-format json --flip",
    ],
    "export": ["btnet export onnx runs/btnet/model runs/btnet/onnx"],
    "export onnx": ["btnet export onnx runs/btnet/model runs/btnet/onnx --opset 17"],
    "gallery": ["btnet gallery enroll gal/ people/ --model runs/btnet/model",
                "btnet gallery info gal/"],
    "gallery enroll": [
        "btnet gallery enroll gal/ people/ --model runs/btnet/model   # label = folder name",
        'btnet gallery enroll gal/ new_guy/*.jpg --label "Jane Doe"',
        "btnet gallery enroll gal/ people/ --resume   # continue an interrupted enrolment",
    ],
    "gallery search": ["btnet gallery search gal/ probe.jpg -k 5",
                       "btnet gallery search gal/ probe.jpg --level image --json out.json"],
    "gallery calibrate": ["btnet gallery calibrate gal/ strangers/ --fpir 0.1"],
    "gallery info": ["btnet gallery info gal/"],
    "gallery recover": ["btnet gallery recover gal/"],
    "identify": ["btnet identify gal/ probes/", "btnet identify gal/ probes/ --threshold 0.42"],
    "align": ["btnet align photos/ aligned/",
              "btnet align cctv/ aligned/ --landmarks points.tsv --no-detect"],
    "data": ["btnet data inspect ../shared/data/lfw/images", "btnet data pack faces/ out/train"],
    "data pack": ["btnet data pack faces/ data/train   # data/train.rec, .idx, property",
                  "btnet data pack faces/ data/train --skip-corrupt"],
    "data inspect": ["btnet data inspect data/train.rec",
                     "btnet data inspect ../shared/data/lfw/pairs.txt --verify"],
    "data export-bin": ["btnet data export-bin ../shared/data/lfw/pairs.txt lfw.bin"],
    "data reindex": ["btnet data reindex data/train.rec",
                     "btnet data reindex data/train.rec --salvage   # keep the intact records"],
    "data synth": ["btnet data synth faces/", "btnet data synth lfw_like.bin --format bin"],
    "cost": ["btnet cost --arch iresnet50", "btnet cost --model runs/btnet/model --json"],
    "model": ["btnet model runs/btnet/model"],
    "quality": ["btnet quality calibrate runs/btnet/model",
                "btnet quality estimate runs/btnet/model crops/*.png"],
    "quality calibrate": [
        "btnet quality calibrate runs/btnet/model   # on the training set the model records",
        "btnet quality calibrate runs/btnet/model --images train_faces/ --samples 3000 --seed 0",
    ],
    "quality estimate": ["btnet quality estimate runs/btnet/model crops/*.png"],
    "branch": ["btnet branch add runs/phi_hr/model faces/ --out runs/phi_hr_branches",
               "btnet branch add w600k_r50.onnx my_faces/ --out r50_tiny_faces"],
}


def iter_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every sub-command parser below ``parser`` as ("gallery enroll", parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from iter_parsers(sub, (*path, name))


def has_examples(parser: argparse.ArgumentParser) -> bool:
    return "examples:" in (parser.epilog or "")


class KeepLinesFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions as usual but keeps text laid out in lines (examples)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def attach_examples(root: argparse.ArgumentParser) -> None:
    """Append each command's examples to its epilog, line by line as written."""
    for name, parser in iter_parsers(root):
        if has_examples(parser) or name not in EXAMPLES:
            continue
        block = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        parser.epilog = f"{parser.epilog}\n\n{block}" if parser.epilog else block
        if parser.formatter_class is argparse.HelpFormatter:
            parser.formatter_class = KeepLinesFormatter
