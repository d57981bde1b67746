"""Bounded load test of a running service from this (second) process, over loopback.

    python benchmarks/load.py --url http://127.0.0.1:8000 [--model DCP] [-n 120] [--concurrency 1,8,32]
    python benchmarks/load.py --start [...]   # starts a local CPU service in a child process first

For each concurrency: N requests with mixed image sizes (320x240 .. 1920x1080 JPEGs, each image
different so the result cache is not hit unless --repeat-images), then throughput, latency
p50/p95/p99, replies by status, and the RSS of the ingress and model replicas (found by their
Ray process titles) before and after. Every request loop is bounded by count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

SIZES = [(320, 240), (640, 480), (1280, 720), (1920, 1080)]


def make_images(n: int, repeat: bool) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = {s: rng.integers(0, 256, (s[1] // 8, s[0] // 8, 3), dtype=np.uint8) for s in SIZES}
    out = []
    for i in range(n if not repeat else len(SIZES)):
        w, h = SIZES[i % len(SIZES)]
        small = base[(w, h)].copy()
        small[0, 0, 0] = i % 256  # a distinct image each time (no cache hits)
        small[0, 1, 0] = (i // 256) % 256
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return [out[i % len(out)] for i in range(n)]


def replica_rss(app: str) -> dict[str, int]:
    import psutil

    rss: dict[str, int] = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if f"ServeReplica:{app}:" in cmd:
            name = cmd.split(f"ServeReplica:{app}:", 1)[1].split()[0]
            try:
                rss[name] = rss.get(name, 0) + p.memory_info().rss
            except psutil.Error:
                pass
    return rss


async def run_level(url: str, model: str, images: list[bytes], concurrency: int, deadline_s: float) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    queue = list(enumerate(images))
    t_end = time.perf_counter() + deadline_s

    async def worker(client):
        while queue and time.perf_counter() < t_end:
            _, data = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await client.post(f"/v1/dehaze/{model}", content=data, headers={"Content-Type": "image/jpeg"})
                statuses[r.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    return {
        "concurrency": concurrency, "requests": len(latencies), "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1), "statuses": {str(k): v for k, v in statuses.items()},
    }


def start_service(port: int) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "dehaze"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--models", "DCP,CAP"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import httpx

    for _ in range(180):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("the service did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--app", default="dehaze", help="Ray Serve application name (for RSS)")
    ap.add_argument("--model", default="DCP")
    ap.add_argument("-n", type=int, default=120, help="requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--deadline", type=float, default=300, help="seconds per level at most")
    ap.add_argument("--repeat-images", action="store_true", help="reuse 4 images (exercises the result cache)")
    ap.add_argument("--start", action="store_true", help="start `dehaze serve` on --url's port first")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = ap.parse_args()

    proc = start_service(int(args.url.rsplit(":", 1)[1].split("/")[0])) if args.start else None
    try:
        images = make_images(args.n, args.repeat_images)
        report = {"url": args.url, "model": args.model, "rss_before": replica_rss(args.app), "levels": []}
        for c in [int(x) for x in args.concurrency.split(",")]:
            report["levels"].append(asyncio.run(run_level(args.url, args.model, images, c, args.deadline)))
        report["rss_after"] = replica_rss(args.app)
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.model} at {args.url}: {args.n} requests per level, sizes {SIZES}")
    print(f"{'conc':>5} {'req':>5} {'rps':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
    for lv in report["levels"]:
        print(f"{lv['concurrency']:>5} {lv['requests']:>5} {lv['throughput_rps']:>7} {lv['p50_ms']:>8} "
              f"{lv['p95_ms']:>8} {lv['p99_ms']:>8}  {lv['statuses']}")
    for name in sorted(set(report["rss_before"]) | set(report["rss_after"])):
        b, a = report["rss_before"].get(name, 0), report["rss_after"].get(name, 0)
        print(f"RSS {name:<10} {b / 1e6:8.1f} MB -> {a / 1e6:8.1f} MB")


if __name__ == "__main__":
    main()
