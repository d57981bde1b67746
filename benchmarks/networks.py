"""Per-network CPU forward time and parameter count, and peak memory of a large tiled image.

    python benchmarks/networks.py [--size 512] [--threads 2] [--only dehazeformer-t,gunet-t]
    python benchmarks/networks.py --peak-rss [--arch dehazeformer-b] [--tile 1024]

Forward time: each conformance variant declared in an algorithm's NETWORKS table, randomly
initialised (timing does not depend on the weights), run through the Dehazer the algorithm
serves it with (the common NetworkDehazer or its own subclass) on a size x size uint8 image
(so each network's own padding rules apply); best of --repeat after one warm-up. Peak RSS: a
4000x3000 image (shared O-HAZE #27 upscaled) through the variant with tiled inference, measured
in a child process (ru_maxrss), against the goal of 3 GB for DehazeFormer-B.
"""
from __future__ import annotations

import argparse
import importlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def declared_networks() -> dict[str, object]:
    from algorithms.common.network import declared_networks as declared

    return dict(sorted(declared().items()))


def dehazer_class(variant: str):
    """The Dehazer the algorithm serves the variant with: NetworkDehazer, or the algorithm's own
    subclass (e.g. DehazeNet's patch-wise transmission + scattering-model pipeline)."""
    from algorithms.common.network import NetworkDehazer, algorithm_packages

    for name in algorithm_packages():
        module = importlib.import_module(f"algorithms.{name}")
        if variant in (getattr(module, "NETWORKS", None) or {}):
            own = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, NetworkDehazer)
                   and c is not NetworkDehazer and c.__module__ == module.__name__]
            return own[0] if own else NetworkDehazer
    return NetworkDehazer


def served_network(name: str, spec):
    """(network, io) as the algorithm serves the variant. MADN serves its Meta feature extractor
    and TransformNet together (``madn``); ``madn-meta`` is timed inside it, not alone."""
    if name == "madn":
        from algorithms.madn import MADN, NETWORKS, PIPELINE_IO

        return MADN(NETWORKS["madn-meta"].build(), NETWORKS["madn"].build()), PIPELINE_IO
    if name == "madn-meta":
        return None, None
    return spec.build(), spec.io


def time_forward(name: str, spec, size: int, repeat: int) -> tuple[float, int]:
    import torch

    from algorithms.common.runtime import RuntimeOptions

    net, io = served_network(name, spec)
    if net is None:
        raise LookupError("part of another variant's pipeline, timed there")
    params = sum(p.numel() for p in net.parameters())
    dehazer = dehazer_class(name)(net, io, RuntimeOptions(device="cpu", tile_size=max(size, 1024)))
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    with torch.inference_mode():
        dehazer(image)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            dehazer(image)
            best = min(best, time.perf_counter() - t0)
    return best, params


def peak_rss_child(arch: str, tile: int) -> None:
    """Runs in a child process: prints peak RSS (MB) after dehazing a 4000x3000 image."""
    import cv2
    import torch

    from algorithms.common.runtime import RuntimeOptions

    torch.set_num_threads(2)
    spec = declared_networks()[arch]
    src = cv2.imread(str(SHARED / "data" / "o-haze" / "hazy" / "27_outdoor_hazy.jpg"))
    image = np.ascontiguousarray(cv2.resize(src, (4000, 3000), interpolation=cv2.INTER_CUBIC)[:, :, ::-1])
    dehazer = dehazer_class(arch)(spec.build(), spec.io, RuntimeOptions(device="cpu", tile_size=tile, tile_overlap=64))
    t0 = time.perf_counter()
    out = dehazer(image)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{arch}: 4000x3000 tiled (tile {tile}, overlap 64) in {seconds:.1f} s, "
          f"peak RSS {peak:.0f} MB (goal <= 3072 MB), output {out.shape}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated variant ids")
    ap.add_argument("--peak-rss", action="store_true")
    ap.add_argument("--arch", default="dehazeformer-b")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        peak_rss_child(args.arch, args.tile)
        return
    if args.peak_rss:
        subprocess.run([sys.executable, __file__, "--child", "--arch", args.arch, "--tile", str(args.tile)], check=True)
        return

    import torch

    torch.set_num_threads(args.threads)
    nets = declared_networks()
    wanted = args.only.split(",") if args.only else list(nets)
    print(f"CPU forward at {args.size}x{args.size}, {args.threads} threads, best of {args.repeat}")
    print(f"{'variant':<22} {'params':>12} {'seconds':>9}")
    for name in wanted:
        try:
            seconds, params = time_forward(name, nets[name], args.size, args.repeat)
            print(f"{name:<22} {params:>12,} {seconds:>9.2f}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next network
            print(f"{name:<22} {'':>12} failed: {type(exc).__name__}: {str(exc)[:80]}", flush=True)


if __name__ == "__main__":
    main()
