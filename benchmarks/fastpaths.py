"""Per-network fast paths on this machine: eager vs channels-last vs torch.compile, and our
forward time against the official implementation's on the conformance input.

    python benchmarks/fastpaths.py [--only dehazeformer-t,gunet-t] [--size 256] [--threads 2]
    python benchmarks/fastpaths.py --vs-official [--only ...]
    python benchmarks/fastpaths.py --autocast      # CUDA only: fp16 vs fp32 PSNR per network

- fast paths: each network (random init; timing does not depend on the weights) through the
  common NetworkDehazer on a size x size image, best of --repeat after warm-up, with
  RuntimeOptions(channels_last=True) and RuntimeOptions(compile=True) next to eager; the
  compile column excludes the first (compiling) call, which is printed separately.
- vs official: our bare network on the vector's own input, against spec["forward_time_cpu_s"]
  of shared/conformance (the official code timed when the vector was made, on a 2-core machine
  of this kind under its own load; specs without the field print "-"). It looks like one cold
  call, so it is compared with our first call in a fresh network; the warm time is printed too.
  The official code is not on this machine, so the two are not from the same run: read the
  ratio as indicative, not exact.
- autocast: on CUDA, every network's fp16-autocast output against its fp32 output (PSNR over
  the [0,1] image); >= 40 dB qualifies it for the IOFacts.autocast_ok allow-list.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"

DEFAULT = "aod-net,light-dehazenet,gcanet,dehazeformer-t,gunet-t,lkdnet-t,mixdehazenet-t,dea-net,ffa-net"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fast_paths(names: list[str], size: int, repeat: int, threads: int) -> None:
    import torch

    from algorithms.common.network import NetworkDehazer
    from algorithms.common.runtime import RuntimeOptions
    from networks import declared_networks

    torch.set_num_threads(threads)
    nets = declared_networks()
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    print(f"## fast paths at {size}x{size}, {threads} threads, best of {repeat} (s)")
    print("| network | eager | channels-last (ratio) | compile (ratio) | compile first call |")
    print("|---|---|---|---|---|")
    for name in names:
        spec = nets[name]
        torch.manual_seed(0)
        row = []
        for opts in ({"channels_last": False}, {"channels_last": True}, {"channels_last": False, "compile": True}):
            dehazer = NetworkDehazer(spec.build(), spec.io, RuntimeOptions(device="cpu", threads=threads, **opts))
            t0 = time.perf_counter()
            try:
                dehazer(image)
            except Exception as exc:  # noqa: BLE001 - report and go on (e.g. compile unsupported)
                row.append((float("nan"), f"fails: {type(exc).__name__}"))
                continue
            first = time.perf_counter() - t0
            row.append((best_of(lambda: dehazer(image), repeat), f"{first:.1f}"))
        eager = row[0][0]
        print(f"| {name} | {eager:.3f} | {row[1][0]:.3f} ({row[1][0] / eager:.2f}x) | "
              f"{row[2][0]:.3f} ({row[2][0] / eager:.2f}x) | {row[2][1]} |")


def vs_official(names: list[str], repeat: int, threads: int) -> None:
    import torch

    sys.path.insert(0, str(SHARED / "conformance"))
    import algorithms
    import conformance

    torch.set_num_threads(threads)
    print(f"## ours vs the official forward on the conformance input ({threads} threads, best of {repeat})")
    print("| network | input | ours, first call (s) | ours, warm (s) | official, from spec (s) | first call / official |")
    print("|---|---|---|---|---|---|")
    for name in names:
        spec, io = conformance.load_variant(name)
        h, w = io["input"].shape[2:]
        times = spec.get("forward_time_cpu_s") or {}
        official = times.get("public") or times.get(f"{h}x{w}")
        net = algorithms.build_network(name).eval()
        net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
        extra = sorted(k for k in io if k.startswith("input_") and "output_" + k[len("input_"):] not in io)
        inputs = [io["input"]] + [io[k] for k in extra]
        with torch.inference_mode():
            t0 = time.perf_counter()
            net(*inputs)
            first = time.perf_counter() - t0
            ours = best_of(lambda: net(*inputs), repeat)
        ratio = f"{first / official:.2f}" if official else "-"
        print(f"| {name} | {tuple(io['input'].shape[2:])} | {first:.3f} | {ours:.3f} | "
              f"{official if official else '-'} | {ratio} |")


def autocast_check(names: list[str]) -> None:
    import torch

    from algorithms.common.network import NetworkDehazer
    from algorithms.common.quality import psnr
    from algorithms.common.runtime import RuntimeOptions
    from networks import declared_networks

    if not torch.cuda.is_available():
        print("autocast check needs CUDA; nothing to do on this machine")
        return
    nets = declared_networks()
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        SHARED / "data" / "sots-indoor" / "hazy" / "1400_5.png").convert("RGB"))
    result = {}
    for name in names:
        spec = nets[name]
        torch.manual_seed(0)
        net = spec.build()
        fp32 = NetworkDehazer(net, spec.io, RuntimeOptions(device="cuda", autocast=False))(image)
        io16 = spec.io.__class__(**{**spec.io.__dict__, "autocast_ok": True})
        fp16 = NetworkDehazer(net, io16, RuntimeOptions(device="cuda", autocast=True))(image)
        result[name] = psnr(fp16, fp32)
        print(f"{name}: fp16 vs fp32 {result[name]:.1f} dB {'OK' if result[name] >= 40 else 'NO'}")
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=DEFAULT)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vs-official", action="store_true")
    ap.add_argument("--autocast", action="store_true")
    args = ap.parse_args()
    names = args.only.split(",")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}")
    if args.autocast:
        autocast_check(names)
    elif args.vs_official:
        vs_official(names, args.repeat, args.threads)
    else:
        fast_paths(names, args.size, args.repeat, args.threads)


if __name__ == "__main__":
    main()
