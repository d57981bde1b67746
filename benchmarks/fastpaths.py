"""Per-network fast paths on this machine: eager vs channels-last vs torch.compile, and our
forward time against the official implementation's on the conformance input.

    python benchmarks/fastpaths.py [--only dehazeformer-t,gunet-t | --all] [--size 256] [--compile]
    python benchmarks/fastpaths.py --vs-official [--only ...]
    python benchmarks/fastpaths.py --autocast      # CUDA only: fp16 vs fp32 PSNR per network

- fast paths: each network (random init; timing does not depend on the weights) through the
  Dehazer it is served with, on a SOTS photo resized to size x size, best of --repeat after
  warm-up, with RuntimeOptions(channels_last=True) (and with --compile, compile=True) next to
  eager, the configurations interleaved call by call; plus the largest difference between the
  channels-last and eager uint8 outputs. The compile column excludes the first (compiling)
  call, which is printed separately. ``--all`` runs every declared network.
- vs official: our bare network (in the memory layout it is served in) on the vector's own
  input and at every larger size the spec timed, against spec["forward_time_cpu_s"]
  of shared/conformance (the official code timed when the vector was made, on a 2-core machine
  of this kind under its own load; specs without the field print "-"). Fourteen specs say how
  (cpu_note: 2 threads, min of 3 runs at the vector's size, one run at the larger size): those
  compare our best of --repeat, and our first call at the larger size. The others give no
  protocol and are compared with our first call in a fresh network (the conservative reading).
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


def fast_paths(names: list[str], size: int, repeat: int, threads: int, compile_too: bool) -> None:
    """Eager vs channels-last (vs torch.compile) per network, the configurations interleaved
    call by call so that a shared machine's drift hits them alike; also how far the
    channels-last output is from the eager one (grey levels of the uint8 image)."""
    import torch
    from PIL import Image

    from algorithms.common.runtime import RuntimeOptions
    from networks import declared_networks, dehazer_class, served_network

    torch.set_num_threads(threads)
    nets = declared_networks()
    photo = Image.open(SHARED / "data" / "sots-indoor" / "hazy" / "1400_5.png").convert("RGB")
    image = np.asarray(photo.resize((size, size)))
    configs = [{"channels_last": False}, {"channels_last": True}]
    if compile_too:
        configs.append({"channels_last": False, "compile": True})
    print(f"## fast paths at {size}x{size}, {threads} threads, best of {repeat} (s), interleaved")
    print("| network | eager | channels-last (ratio) | channels-last vs eager, max grey levels |"
          + (" compile (ratio) | compile first call |" if compile_too else ""))
    print("|---|---|---|---|" + ("---|---|" if compile_too else ""))
    for name in names:
        torch.manual_seed(0)
        net, io = served_network(name, nets[name])
        if net is None:
            continue  # timed inside another variant's pipeline (networks.served_network)
        dehazers, firsts, outs = [], [], []
        try:
            for opts in configs:
                torch.manual_seed(0)
                copy, _ = served_network(name, nets[name])
                copy.load_state_dict(net.state_dict())
                dehazer = dehazer_class(name)(copy, io, RuntimeOptions(device="cpu", threads=threads, **opts))
                t0 = time.perf_counter()
                outs.append(dehazer(image))
                firsts.append(time.perf_counter() - t0)
                dehazers.append(dehazer)
        except Exception as exc:  # noqa: BLE001 - report and go on (e.g. compile unsupported)
            print(f"| {name} | fails: {type(exc).__name__}: {str(exc)[:80]} |", flush=True)
            continue
        times = [[] for _ in configs]
        for _ in range(repeat):
            for k, dehazer in enumerate(dehazers):
                t0 = time.perf_counter()
                dehazer(image)
                times[k].append(time.perf_counter() - t0)
        best = [min(t) for t in times]
        diff = int(np.abs(outs[1].astype(np.int16) - outs[0]).max())
        row = f"| {name} | {best[0]:.3f} | {best[1]:.3f} ({best[1] / best[0]:.2f}x) | {diff} |"
        if compile_too:
            row += f" {best[2]:.3f} ({best[2] / best[0]:.2f}x) | {firsts[2]:.1f} |"
        print(row, flush=True)


def _official_protocol(spec: dict) -> str:
    """How the spec's official times were taken: "min3" (2 threads, min of 3 runs at the
    vector's size, one run at the larger size, per its cpu_note) or "unknown" (no note: compared
    as one cold call, the conservative reading)."""
    return "min3" if "min of 3 runs" in (spec.get("cpu_note") or "") else "unknown"


def vs_official(names: list[str], repeat: int, threads: int) -> None:
    import torch

    sys.path.insert(0, str(SHARED / "conformance"))
    import algorithms
    import conformance
    from algorithms.common.network import find_network

    torch.set_num_threads(threads)
    print(f"## ours vs the official forward ({threads} threads)")
    print("| network | input | official protocol | ours, first call (s) | ours, best of "
          f"{repeat} (s) | official, from spec (s) | ours / official |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        if not (SHARED / "conformance" / name / "spec.json").is_file():
            continue  # no vector, no official time (e.g. wpxnet-hqp)
        spec, io = conformance.load_variant(name)
        times = spec.get("forward_time_cpu_s") or {}
        protocol = _official_protocol(spec)
        net = algorithms.build_network(name).eval()
        net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
        extra = sorted(k for k in io if k.startswith("input_") and "output_" + k[len("input_"):] not in io)
        inputs = [io["input"]] + [io[k] for k in extra]
        h, w = io["input"].shape[2:]
        layout = torch.channels_last if find_network(name).io.channels_last else torch.contiguous_format
        net = net.to(memory_format=layout)  # as served (IOFacts.channels_last)
        # the vector's own input, then every larger square size the spec timed (random input;
        # the hidden vector's shape is not known here)
        cases = [((h, w), inputs, times.get("public") or times.get(f"{h}x{w}"))]
        for key, official in times.items():
            size = tuple(int(v) for v in key.split("x")) if "x" in key else None
            if size and size != (h, w) and not extra:
                torch.manual_seed(0)
                cases.append((size, [torch.rand(1, io["input"].shape[1], *size) * (inputs[0].max() - inputs[0].min())
                                     + inputs[0].min()], official))
        for index, (size, args, official) in enumerate(cases):
            args = [t.contiguous(memory_format=layout) if t.dim() == 4 else t for t in args]
            with torch.inference_mode():
                t0 = time.perf_counter()
                net(*args)
                first = time.perf_counter() - t0
                best = best_of(lambda: net(*args), repeat) if index == 0 else first
            # min3: best of runs at the vector's size, the one run at the larger size; else first call
            ours = best if protocol == "min3" and index == 0 else first
            ratio = f"{ours / official:.2f}" if official else "-"
            print(f"| {name} | {size} | {protocol} | {first:.3f} | {best:.3f} | {official if official else '-'} | "
                  f"{ratio} |")


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
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (10-40 s per network)")
    ap.add_argument("--all", action="store_true", help="every declared network (overrides --only)")
    args = ap.parse_args()
    if args.all:
        from networks import declared_networks

        names = list(declared_networks())
    else:
        names = args.only.split(",")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}")
    if args.autocast:
        autocast_check(names)
    elif args.vs_official:
        vs_official(names, args.repeat, args.threads)
    else:
        fast_paths(names, args.size, args.repeat, args.threads, args.compile)


if __name__ == "__main__":
    main()
