"""Round trip through arcface_torch's ONNX format: export, import, compare on real faces.

Usage::

    python benchmarks/onnx_import_roundtrip.py [TRUNK] [--faces 200] [--lfw ../shared/data/lfw]

TRUNK is anything ``open_trunk`` takes (a btnet model folder, a ``backbone.pth``, an ``.onnx``);
without it a full-size iresnet50 (width 64, 112 px, 512-d: the shape of insightface's
``w600k_r50.onnx``) with random, non-trivial BatchNorm statistics is built. A non-ONNX trunk is
exported the arcface_torch way (``export_arcface_onnx``) first. Then the graph is imported and
the first image of the first ``--faces`` LFW people (resized to the canonical size) is run
through onnxruntime and through the imported PyTorch model; printed: the largest absolute
difference of raw and of L2-normalised embeddings, and the import/export times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "io"))


def main() -> None:
    from onnxhelpers import ort_run, random_iresnet, unit

    from btnet.data.images import read_image
    from btnet.data.resolution import fit_to
    from btnet.data.transforms import to_tensor
    from btnet.deployment.onnx_arcface import export_arcface_onnx
    from btnet.io.onnx_import import load_onnx_backbone, onnx_input
    from btnet.io.trunks import open_trunk

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trunk", nargs="?")
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--lfw", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                         / "lfw"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    if args.trunk and args.trunk.endswith(".onnx"):
        graph, original = Path(args.trunk), None
    else:
        original = (open_trunk(args.trunk).backbone if args.trunk else
                    random_iresnet("iresnet50", 64, 112, 512, seed=0))
        start = time.perf_counter()
        graph = export_arcface_onnx(original, tmp / "model.onnx")
        print(f"export_arcface_onnx: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    backbone, info = load_onnx_backbone(graph)
    print(f"load_onnx_backbone: {time.perf_counter() - start:.1f} s -> {info['arch']} width "
          f"{info['width']} at {info['input_size']} px, {info['embedding_size']}-d, "
          f"BatchNorms kept {info['batchnorms']['kept']}, folded "
          f"{info['batchnorms']['folded_into_conv']}; input: {info['input_convention']['source']}")
    people = sorted(Path(args.lfw, "images").iterdir())[: args.faces]
    size = info["input_size"]
    images = [fit_to(read_image(sorted(p.glob("*.jpg"))[0]), size) for p in people]
    raw = raw_abs = scale = unit_d = orig_d = 0.0
    for b in range(0, len(images), args.batch):
        x = to_tensor(images[b : b + args.batch])
        ref = ort_run(graph, onnx_input(graph, x.numpy()))
        with torch.inference_mode():
            got = backbone(x).numpy()
            if original is not None:
                orig_d = max(orig_d, float(np.abs(unit(original.eval()(x).numpy()) -
                                                  unit(got)).max()))
        raw = max(raw, float(np.abs(ref - got).max() / max(1.0, np.abs(ref).max())))
        raw_abs = max(raw_abs, float(np.abs(ref - got).max()))
        scale = max(scale, float(np.abs(ref).max()))
        unit_d = max(unit_d, float(np.abs(unit(ref) - unit(got)).max()))
    print(f"{len(images)} LFW faces: max |ORT - import| raw {raw_abs:.2e} (max |ORT| {scale:.3g}; "
          f"relative {raw:.2e}), "
          f"L2-normalised {unit_d:.2e}"
          + (f"; max |original - import| L2-normalised {orig_d:.2e}" if original is not None
             else ""))


if __name__ == "__main__":
    main()
