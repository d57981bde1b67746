"""Serving-path performance, each number next to a baseline measured in the same run.

    python benchmarks/serving.py overhead [-n 30]      # HTTP round trip vs in-process Dehazer
    python benchmarks/serving.py batching [-n 48]      # @serve.batch on vs off at concurrency 8
    python benchmarks/serving.py scaling  [-n 24]      # 1 vs 2 DCP replicas
    python benchmarks/serving.py all

Each section starts a local Ray cluster (2 CPUs unless --cpus), deploys the application with
``build_app`` (CPU profile, local storage in a temp dir, the result cache defeated by distinct
images) and talks to it over loopback HTTP from this process.

- overhead: DCP on a 1920x1080 JPEG and LightDehazeNet (its released weights from
  ../shared/weights) on a 512x512 PNG; sequential requests; p50/p99 of the round trip against
  two baselines in this process, each request interleaved with one call of each (a shared
  machine's speed drifts by tens of percent over minutes): ``dehazer(image)`` on the decoded
  image, and decode + ``dehazer`` + encode of the same bytes with the service's own codecs. The
  round trip includes upload, decode, dispatch to the replica, inference, encode and download.
- batching: LightDehazeNet on 256x256 images, 8 concurrent clients, max_batch_size 1 vs 8.
- scaling: DCP on 1920x1080 JPEGs, 4 concurrent clients, 1 vs 2 replicas of 1 CPU each
  (one math thread per replica, so replicas do not oversubscribe the cores).
"""
from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def distinct_images(n: int, size: tuple[int, int], fmt: str, seed: int = 0) -> list[bytes]:
    """n different images (a real hazy photo resized, a 16x16 block changed in each; ``seed``
    gives another set) so that no request hits the result cache."""
    from PIL import Image

    base = Image.open(SHARED / "data" / "sots-indoor" / "hazy" / "1400_5.png").convert("RGB").resize(size)
    arr = np.asarray(base).copy()
    out = []
    for i in range(n):
        arr[:16, :16] = ((37 * i) % 256, (91 * i // 256) % 256, (53 * seed) % 256)  # a whole JPEG block
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A local Ray cluster with Serve on a free port and a weights root in legacy layout."""

    def __init__(self, cpus: int):
        import ray
        from ray import serve

        self.tmp = Path(tempfile.mkdtemp(prefix="dehaze-bench-"))
        weights = self.tmp / "weights"
        (weights / "LightDehazeNet").mkdir(parents=True)
        shutil.copy(SHARED / "weights" / "light-dehazenet" / "trained_LDNet.pth", weights / "LightDehazeNet")
        self.settings = {"weights_root": str(weights), "storage_dir": str(self.tmp / "store")}
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.url = f"http://127.0.0.1:{self.port}"

    def deploy(self, name: str, models: list[str], overrides: dict) -> str:
        from ray import serve

        from serve_app.app import build_app

        serve.run(build_app({"profile": "cpu", "models": models, "settings": self.settings,
                             "overrides": overrides}), name=name, route_prefix=f"/{name}", blocking=False)
        return f"{self.url}/{name}"

    def delete(self, name: str) -> None:
        from ray import serve

        serve.delete(name)

    def close(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)


STAGES: dict[str, list[float]] = {}


def stage_summary() -> str:
    """Mean of each Server-Timing stage over the requests since the last call (ms)."""
    text = ", ".join(f"{k} {statistics.mean(v):.0f}" for k, v in STAGES.items())
    STAGES.clear()
    return text


def post_all(base: str, model: str, bodies: list[bytes], concurrency: int, ctype: str,
             params: dict | None = None) -> tuple[list[float], float, dict]:
    """Send every body with `concurrency` client threads; (latencies s, wall s, statuses)."""
    import httpx

    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    todo = list(enumerate(bodies))

    def client() -> None:
        with httpx.Client(base_url=base, timeout=600) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    _, body = todo.pop(0)
                t0 = time.perf_counter()
                r = c.post(f"/v1/dehaze/{model}", content=body, headers={"Content-Type": ctype}, params=params)
                dt = time.perf_counter() - t0
                for part in r.headers.get("Server-Timing", "").split(","):
                    if ";dur=" in part:
                        name, dur = part.strip().split(";dur=")
                        STAGES.setdefault(name, []).append(float(dur))
                key = r.status_code if r.headers.get("X-Cache") != "hit" else "cache hit"
                with lock:
                    lat.append(dt)
                    statuses[key] = statuses.get(key, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0, statuses


def warm(base: str, model: str, body: bytes, ctype: str, tries: int = 3) -> None:
    """First requests start the replica and load the model (not measured)."""
    import httpx

    with httpx.Client(base_url=base, timeout=600) as c:
        for _ in range(tries):
            r = c.post(f"/v1/dehaze/{model}", content=body, headers={"Content-Type": ctype})
            if r.status_code != 200:
                raise RuntimeError(f"{model}: {r.status_code} {r.text[:200]}")


def in_process_dehazer(model: str, weights_root: str):
    """The Dehazer a replica serves, built in this process with one thread, warmed up."""
    import cv2

    from algorithms.common.runtime import RuntimeOptions
    from algorithms.registry import create

    cv2.setNumThreads(1)  # as in a replica (serve_app.model_server.configure_threads)
    return create(model, None, weights_root=weights_root, runtime=RuntimeOptions(device="cpu", threads=1))


def section_overhead(cluster: Cluster, n: int) -> None:
    """Round trips interleaved with the two in-process baselines, request by request, so the
    drift of a shared machine's speed cancels in the ratios."""
    import torch

    from serve_app.imaging import decode_image, encode_image

    torch.set_num_threads(1)
    one_replica = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}
    base = cluster.deploy("overhead", ["DCP", "LightDehazeNet"], {"DCP": one_replica, "LightDehazeNet": one_replica})
    print("\n## overhead: HTTP round trip vs in-process (sequential requests, interleaved)")
    print("| model | input -> output | Dehazer p50 / p99 (ms) | decode+Dehazer+encode p50 (ms) | "
          "round trip p50 / p99 (ms) | ratio vs Dehazer | ratio vs decode+Dehazer+encode | "
          "server stages, mean ms | statuses |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, (model, size, fmt, ctype, out_fmt) in enumerate([("DCP", (1920, 1080), "JPEG", "image/jpeg", "jpeg"),
                                             ("DCP", (1920, 1080), "JPEG", "image/jpeg", "png"),
                                             ("LightDehazeNet", (512, 512), "PNG", "image/png", "png")]):
        bodies = distinct_images(n + 3, size, fmt, seed)
        warm(base, model, bodies[0], ctype)
        dehazer = in_process_dehazer(model, cluster.settings["weights_root"])
        image = decode_image(bodies[1], 10**9, 10**9).array
        dehazer(image)
        trips, local, pipeline, statuses = [], [], [], {}
        for body in bodies[3:]:
            lat, _, st = post_all(base, model, [body], 1, ctype, {"format": out_fmt})
            trips += lat
            for k, v in st.items():
                statuses[k] = statuses.get(k, 0) + v
            t0 = time.perf_counter()
            dehazer(image)
            local.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            encode_image(dehazer(decode_image(body, 10**9, 10**9).array), out_fmt)
            pipeline.append(time.perf_counter() - t0)
        p50 = statistics.median
        print(f"| {model} | {size[0]}x{size[1]} {fmt} -> {out_fmt.upper()} | {pct(local, 50) * 1e3:.0f} / "
              f"{pct(local, 99) * 1e3:.0f} | {pct(pipeline, 50) * 1e3:.0f} | {pct(trips, 50) * 1e3:.0f} / "
              f"{pct(trips, 99) * 1e3:.0f} | {p50(trips) / p50(local):.2f}x | {p50(trips) / p50(pipeline):.2f}x | "
              f"{stage_summary()} | {statuses} |")
    cluster.delete("overhead")


def section_batching(cluster: Cluster, n: int) -> None:
    print("\n## batching: LightDehazeNet, 256x256 PNG, 8 concurrent clients")
    print("| max_batch_size | images/s | p50 (ms) | p99 (ms) | statuses |")
    print("|---|---|---|---|---|")
    results = {}
    for size in (1, 8):
        name = f"batch{size}"
        base = cluster.deploy(name, ["LightDehazeNet"], {"LightDehazeNet": {
            "max_ongoing_requests": 16, "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            "user_config": {"max_batch_size": size, "batch_wait_timeout_s": 0.02, "slot_pixels": 65536}}})
        bodies = distinct_images(n + 3, (256, 256), "PNG", seed=size)
        warm(base, "LightDehazeNet", bodies[0], "image/png")
        lat, wall, statuses = post_all(base, "LightDehazeNet", bodies[3:], 8, "image/png")
        results[size] = n / wall
        print(f"| {size} | {n / wall:.1f} | {pct(lat, 50) * 1e3:.0f} | {pct(lat, 99) * 1e3:.0f} | {statuses} |")
        cluster.delete(name)
    print(f"throughput gain of batching: {results[8] / results[1]:.2f}x")


def section_scaling(cluster: Cluster, n: int) -> None:
    print("\n## scaling: DCP, 1920x1080 JPEG in and out, 4 concurrent clients, 1 thread per replica")
    print("| replicas | images/s | p50 (ms) | p99 (ms) | server stages, mean ms | statuses |")
    print("|---|---|---|---|---|---|")
    results = {}
    STAGES.clear()
    for replicas in (1, 2):
        name = f"scale{replicas}"
        base = cluster.deploy(name, ["DCP"], {"DCP": {
            "ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 4,
            "autoscaling_config": {"min_replicas": replicas, "max_replicas": replicas}}})
        bodies = distinct_images(n + 4, (1920, 1080), "JPEG", seed=replicas)
        for b in bodies[:4]:
            warm(base, "DCP", b, "image/jpeg", tries=1)
        time.sleep(2 * replicas)  # all replicas up
        lat, wall, statuses = post_all(base, "DCP", bodies[4:], 4, "image/jpeg", {"format": "jpeg"})
        results[replicas] = n / wall
        print(f"| {replicas} | {n / wall:.2f} | {pct(lat, 50) * 1e3:.0f} | {pct(lat, 99) * 1e3:.0f} | "
              f"{stage_summary()} | {statuses} |")
        cluster.delete(name)
    print(f"throughput 2 vs 1 replicas: {results[2] / results[1]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("section", choices=["overhead", "batching", "scaling", "all"])
    ap.add_argument("-n", type=int, default=None, help="measured requests per configuration")
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    import os
    import platform

    print(f"# serving benchmark: {time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Ray cluster of {args.cpus} CPUs")
    cluster = Cluster(args.cpus)
    try:
        if args.section in ("overhead", "all"):
            section_overhead(cluster, args.n or 30)
        if args.section in ("batching", "all"):
            section_batching(cluster, args.n or 48)
        if args.section in ("scaling", "all"):
            section_scaling(cluster, args.n or 24)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
