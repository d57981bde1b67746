"""Neighborhood attention on CPU, and the whole WPXNet forward that depends on it.

    python benchmarks/neighborhood_attention.py            # both parts
    python benchmarks/neighborhood_attention.py na --size 256 --dilations 1 2
    python benchmarks/neighborhood_attention.py wpxnet --size 448

``na``: our pure-PyTorch neighborhood attention (algorithms/common/neighborhood_attention.py)
at SIZE x SIZE, 64 channels, kernel 7, per dilation: forward time (best of --repeat) and the
peak memory it adds (RSS high-water mark of a fresh process, minus its RSS before the call).
Baseline in the same run: the exact gather formulation (every query gathers its k*k keys, the
textbook way and what the WPXNet reference run used), at a size where it fits (--gather-size).
natten's own CPU path (flex attention) runs out of memory at 256 x 256, so it is not a baseline.

``wpxnet``: the official-size WPXNet (39.5 M parameters) forward at SIZE x SIZE under random
weights, first and second call (goal <= 20 s at 448 x 448 on this 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _gather_na(q, k, v, kernel, dilation):
    """Exact reference: each query gathers its clamped (dilated) window, [n, h, w, k*k, d]."""
    import torch

    n, h, w, d = q.shape

    def starts(length):
        idx = torch.arange(length)
        group = idx % dilation
        pos = idx // dilation
        glen = (length - group + dilation - 1) // dilation
        s = (pos - kernel // 2).clamp(min=0)
        s = torch.minimum(s, glen - kernel)
        return group, s

    gy, sy = starts(h)
    gx, sx = starts(w)
    off = torch.arange(kernel)
    ys = gy[:, None] + (sy[:, None] + off) * dilation  # [h, k]
    xs = gx[:, None] + (sx[:, None] + off) * dilation  # [w, k]
    keys = k[:, ys[:, None, :, None], xs[None, :, None, :]].reshape(n, h, w, kernel * kernel, d)
    vals = v[:, ys[:, None, :, None], xs[None, :, None, :]].reshape(n, h, w, kernel * kernel, d)
    attn = (q.unsqueeze(-2) @ keys.transpose(-1, -2)).softmax(-1)
    return (attn @ vals).squeeze(-2)


def one_case(impl: str, size: int, dilation: int, repeat: int, threads: int) -> dict:
    import torch

    from algorithms.common.neighborhood_attention import neighborhood_attention_2d

    torch.set_num_threads(threads)
    heads, dim, kernel = 4, 64, 7
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, size, size, heads, dim // heads, generator=g) for _ in range(3))
    before = _rss_mb()
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeat):
            t0 = time.perf_counter()
            if impl == "ours":
                out = neighborhood_attention_2d(q, k, v, kernel, dilation)
            else:  # heads first, query pre-scaled
                qh, kh, vh = (t[0].permute(2, 0, 1, 3) for t in (q, k, v))
                out = _gather_na(qh * (dim // heads) ** -0.5, kh, vh, kernel, dilation)
            best = min(best, time.perf_counter() - t0)
            del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "size": size, "dilation": dilation, "seconds": best, "peak_mb": peak - before}


def run_case(impl, size, dilation, repeat, threads) -> dict:
    """In a fresh process, so the RSS high-water mark belongs to this case alone."""
    code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import neighborhood_attention as b; "
            f"print(json.dumps(b.one_case({impl!r}, {size}, {dilation}, {repeat}, {threads})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_na(args) -> None:
    print(f"neighborhood attention, 64 channels (4 heads), kernel 7, {args.threads} threads, best of {args.repeat}")
    print(f"{'impl':8} {'size':>5} {'dil':>4} {'time s':>8} {'peak MB':>8}")
    rows = []
    for dilation in args.dilations:
        for impl, size in (("ours", args.size), ("ours", args.gather_size), ("gather", args.gather_size)):
            r = run_case(impl, size, dilation, args.repeat, args.threads)
            rows.append(r)
            print(f"{r['impl']:8} {r['size']:>5} {r['dilation']:>4} {r['seconds']:8.3f} {r['peak_mb']:8.0f}")
        ours = next(r for r in rows if r["impl"] == "ours" and r["size"] == args.gather_size and r["dilation"] == dilation)
        ref = rows[-1]
        print(f"  dilation {dilation}: ours / gather at {args.gather_size}: time {ours['seconds'] / ref['seconds']:.2f}x, "
              f"peak memory {ours['peak_mb'] / max(ref['peak_mb'], 1):.2f}x")


def bench_wpxnet(args) -> None:
    import torch

    from algorithms.wpxnet.arch import FusionRefine

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = FusionRefine().eval()
    x = torch.rand(1, 3, args.size, args.size)
    times = []
    with torch.inference_mode():
        for _ in range(2):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in net.parameters())
    print(f"WPXNet forward {args.size}x{args.size}, {params / 1e6:.1f} M params, {args.threads} threads: "
          f"first {times[0]:.1f} s, second {times[1]:.1f} s (goal <= 20 s at 448)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", choices=["na", "wpxnet", "all"], default="all")
    p.add_argument("--size", type=int, default=None, help="na: 256; wpxnet: 448")
    p.add_argument("--gather-size", type=int, default=96, help="size of the same-run gather baseline")
    p.add_argument("--dilations", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.part in ("na", "all"):
        bench_na(argparse.Namespace(**{**vars(args), "size": args.size or 256}))
    if args.part in ("wpxnet", "all"):
        bench_wpxnet(argparse.Namespace(**{**vars(args), "size": args.size or 448}))


if __name__ == "__main__":
    main()
