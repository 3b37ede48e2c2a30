"""onnxruntime vs eager PyTorch on CPU: images/s per path, side by side.

Usage::

    python benchmarks/onnx_vs_torch.py [MODEL_DIR] [--threads 1] [--batch 32] [--seconds 2]

Without MODEL_DIR an untrained BTNet is built (``--arch``, ``--input-size``, ``--width``);
speed does not depend on the weights. Both runtimes get the same thread count, the same batches
and are timed after a warm-up; the ONNX graphs are exported into a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _rate(fn, x, seconds: float) -> float:
    fn(x)  # warm-up
    fn(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(x)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="stored BTNet folder (default: build one)")
    ap.add_argument("--arch", default="iresnet18")
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    from btnet.deployment.onnx_export import OnnxEncoder, export_onnx
    from btnet.io.model_store import load_model, save_btnet
    from btnet.models import BTNet, build_backbone

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            trunk = build_backbone(args.arch, input_size=args.input_size, width=args.width)
            res = [r for r in (7, 14, 28) if r in trunk.available_resolutions()]
            model_dir = save_btnet(BTNet(trunk, res).eval(), Path(tmp) / "model")
        model = load_model(model_dir).model
        export_onnx(model_dir, Path(tmp) / "onnx", verify=False)
        enc = OnnxEncoder(Path(tmp) / "onnx", threads=args.threads)
        name = args.model or f"untrained {args.arch} width {args.width} at {args.input_size}"
        print(f"model: {name}; batch {args.batch}; {args.threads} thread(s); CPU")
        print(f"{'path':>6} {'torch img/s':>12} {'onnxrt img/s':>13} {'speed-up':>9}")
        for r in enc.paths:
            module = model.path(r).eval()
            x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 3, r, r)).astype(np.float32)
            xt = torch.from_numpy(x)

            def run_torch(_x, module=module, xt=xt):
                with torch.inference_mode():
                    return module(xt)

            t = _rate(run_torch, x, args.seconds)
            o = _rate(lambda v, r=r: enc.run_path(r, v), x, args.seconds)
            print(f"{r:>6} {t:>12.1f} {o:>13.1f} {o / t:>8.2f}x")


if __name__ == "__main__":
    main()
