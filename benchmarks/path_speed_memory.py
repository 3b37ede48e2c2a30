"""Speed of every BTNet path against phi_hr, eager and onnxruntime, and the memory of serving them.

For each configuration (default: IResNet-50 at S = 112 and IResNet-18 at S = 56, branches
7/14/28) this builds a BTNet with trained-like weights (every branch and every path's
BatchNorm differ from the trunk's, so nothing is shared by coincidence), stores it, exports it
to ONNX, and prints, measured interleaved (round-robin over the encoders, median of the rounds):

- img/s of phi_hr on r x r faces (bicubic up-sampling to S, then the trunk) and of BTNet path r,
  eager PyTorch and onnxruntime (trunk weights shared across path sessions, and each session
  optimised on its own), all through the encoders users get (``btnet.load``), one batch per call;
- the MAC ratio phi_hr / path r beside it;
- the resident memory (RSS) an encoder adds once it has served faces of every size, each
  measured in a fresh process, against the bytes of the model's unique tensors.

Untrained deep networks can produce denormal floats, which run far slower on x86 and distort
timings: denormals are flushed to zero here (``torch.set_flush_denormal(True)``; onnxruntime
``session.set_denormal_as_zero``). Both wall and CPU-time rates are printed: on a shared machine
the CPU-time rate (one thread) is the steadier one.

    python benchmarks/path_speed_memory.py                       # both configurations
    python benchmarks/path_speed_memory.py --configs iresnet18@56 --batch 16 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BRANCHES = (7, 14, 28)
DENORMALS = "denormals flushed to zero (torch.set_flush_denormal(True); onnxruntime session.set_denormal_as_zero)"


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def input_sizes(model) -> tuple[int, ...]:
    """The resolutions a BTNet serves (before and after paths became modules)."""
    sizes = getattr(model, "input_sizes", None)
    return tuple(sizes if sizes is not None else model.paths)


def path_module(model, r: int) -> torch.nn.Module:
    return model.path(r) if hasattr(model, "path") else model.export_path(r)


def unique_tensor_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def trained_like(model) -> None:
    """Give every branch and every path's BatchNorm its own values, as training would.

    Branch weights are nudged; each path's BatchNorm statistics are set from one train-mode
    batch at that path's resolution (so activations stay at trained-like magnitudes).
    """
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "branch" in name or p.dim() == 1:  # branches; BN (and PReLU) vectors
                p.mul_(1 + 0.01 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative: one batch sets the statistics
        model.train()
        for r in input_sizes(model):
            model(torch.randn(8, 3, r, r, generator=gen) * 0.8)
        model.eval()


def build(arch: str, size: int, folder: Path) -> tuple[Path, Path, dict]:
    from btnet.deployment.onnx_export import export_onnx
    from btnet.io.model_store import save_btnet
    from btnet.models import BTNet, build_backbone
    from btnet.models.cost import count_macs

    torch.manual_seed(0)
    model = BTNet(build_backbone(arch, input_size=size), BRANCHES).eval()
    trained_like(model)
    model_dir = save_btnet(model, folder / "model")
    t = time.perf_counter()
    export_onnx(model_dir, folder / "onnx")
    export_s = time.perf_counter() - t
    trunk_macs = count_macs(model.trunk, size)
    macs = {r: count_macs(path_module(model, r), r) for r in input_sizes(model)}
    onnx_bytes = sum(p.stat().st_size for p in (folder / "onnx").iterdir())
    info = {
        "macs": macs,
        "trunk_macs": trunk_macs,
        "model_bytes": unique_tensor_bytes(model),
        "trunk_bytes": unique_tensor_bytes(model.trunk),
        "onnx_bytes": onnx_bytes,
        "export_s": export_s,
    }
    return model_dir, folder / "onnx", info


def open_encoder(kind: str, model_dir: Path, onnx_dir: Path, threads: int):
    from btnet.inference import UpsamplingEncoder, load_encoder

    if kind == "phi_hr":
        return UpsamplingEncoder(load_encoder(model_dir).model.trunk, name="phi_hr")
    if kind == "eager":
        return load_encoder(model_dir)
    enc = load_encoder(onnx_dir, threads=threads, share_weights=kind == "ort_shared")
    enc.runner.session_config = {"session.set_denormal_as_zero": "1"}
    return enc


def faces(r: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(r)
    return [rng.integers(0, 256, (r, r, 3), dtype=np.uint8) for _ in range(n)]


def rate(enc, images: list[np.ndarray], seconds: float) -> tuple[float, float]:
    """(img per wall second, img per CPU second) over at least ``seconds`` and two calls."""
    n, calls = 0, 0
    t, c = time.perf_counter(), time.process_time()
    while calls < 2 or time.perf_counter() - t < seconds:
        enc.encode(images, batch_size=len(images))
        n += len(images)
        calls += 1
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


KINDS = ("phi_hr", "eager", "ort_shared", "ort_own")


def speed(model_dir: Path, onnx_dir: Path, info: dict, args) -> None:
    encs = {k: open_encoder(k, model_dir, onnx_dir, args.threads) for k in KINDS}
    sizes = sorted(info["macs"])
    size = max(sizes)
    print(f"{'r':>4} {'MAC phi_hr/path':>15} | img/s wall (CPU-s): {'phi_hr':>14} {'eager':>14} "
          f"{'ORT shared':>14} {'ORT own':>14} | eager/phi_hr  ORT shared/eager  ORT own/eager"
          "  max|ORT-eager|")
    for r in sizes:
        images = faces(r, args.batch)
        for e in encs.values():
            e.encode(images, batch_size=args.batch)  # warm up (sessions, caches)
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
        for _ in range(args.rounds):
            for k, e in encs.items():
                runs[k].append(rate(e, images, args.seconds))
        med = {k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v])))
               for k, v in runs.items()}
        diff = np.abs(encs["eager"].encode(images).embeddings
                      - encs["ort_shared"].encode(images).embeddings).max()
        ratio = info["trunk_macs"] / info["macs"][r]
        cells = " ".join(f"{med[k][0]:6.1f} ({med[k][1]:5.1f})" for k in KINDS)
        print(f"{r:>4} {ratio:>15.2f} | {'':>20}{cells} | {med['eager'][1] / med['phi_hr'][1]:>11.2f}x "
              f"{med['ort_shared'][1] / med['eager'][1]:>15.2f}x {med['ort_own'][1] / med['eager'][1]:>12.2f}x"
              f"  {diff:.1e}" + ("   (r = S: phi_hr is the trunk)" if r == size else ""))
        sys.stdout.flush()


def memory(kind: str, model_dir: str, onnx_dir: str, sizes: list[int], threads: int) -> dict:
    """RSS added by one encoder: after opening it, and after faces of every size."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    import onnxruntime  # noqa: F401

    import btnet.inference  # noqa: F401  (imports paid before the baseline)

    base = rss_mib()
    enc = open_encoder(kind, Path(model_dir), Path(onnx_dir), threads)
    opened = rss_mib() - base
    for r in sizes:
        enc.encode(faces(r, 2), batch_size=2)
    return {"open": opened, "served": rss_mib() - base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="iresnet50@112,iresnet18@56", help="ARCH@S,...")
    ap.add_argument("--batch", type=int, default=8, help="faces per encode call")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum time per measurement")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-probe", nargs=4, metavar=("KIND", "MODEL", "ONNX", "SIZES"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        kind, model_dir, onnx_dir, sizes = args.memory_probe
        out = memory(kind, model_dir, onnx_dir, [int(s) for s in sizes.split(",")], args.threads)
        print(json.dumps(out))
        return
    print(f"batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds; "
          f"{DENORMALS}; {os.cpu_count()} CPUs visible")
    for spec in args.configs.split(","):
        arch, size = spec.split("@")
        with tempfile.TemporaryDirectory() as tmp:
            model_dir, onnx_dir, info = build(arch, int(size), Path(tmp))
            mib = 2**20
            print(f"\n== {arch} at S = {size}, branches {BRANCHES}: model {info['model_bytes'] / mib:.0f} MiB "
                  f"of unique tensors (trunk {info['trunk_bytes'] / mib:.0f} MiB); ONNX export "
                  f"{info['onnx_bytes'] / mib:.0f} MiB on disk (written in {info['export_s']:.0f} s)")
            speed(model_dir, onnx_dir, info, args)
            sizes = ",".join(str(r) for r in sorted(info["macs"]))
            print("resident memory added by an encoder (fresh process), MiB: after open -> after "
                  "faces of every size")
            for kind in KINDS[1:]:
                out = subprocess.run(
                    [sys.executable, __file__, "--threads", str(args.threads), "--memory-probe",
                     kind, str(model_dir), str(onnx_dir), sizes],
                    capture_output=True, text=True, check=True,
                )
                m = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  {kind:>10}: {m['open']:7.0f} -> {m['served']:7.0f}")


if __name__ == "__main__":
    main()
