"""ModelServer: the one deployment class, instantiated once per algorithm of the registry.

Variants of the algorithm share the deployment through ``@serve.multiplexed`` (an LRU of
loaded checkpoints per replica). Payloads in and out are uint8 arrays; errors come back as
typed (class name, message) pairs so the ingress can answer with the right status.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ray import serve

from algorithms.common.quality import haze_score
from algorithms.common.runtime import RuntimeOptions
from algorithms.errors import DehazeError
from algorithms.registry import create, load_registry
from serve_app.autoscaling import gpu_autoscaling_stats
from serve_app.errors import ModelFailedError, to_wire
from serve_app.metrics import ReplicaMetrics
from serve_app.settings import settings_with
from serve_app.storage import make_weights_store

logger = logging.getLogger("ray.serve")

#: checkpoints kept loaded per replica (serve.multiplexed needs the number at class definition)
MAX_VARIANTS_PER_REPLICA = 3


def configure_threads(threads: int) -> None:
    """Size the math libraries' thread pools to the replica's CPUs (no oversubscription)."""
    import cv2
    import torch

    threads = max(1, threads)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class ModelServer:
    def __init__(self, algorithm: str, threads: int = 1, registry_path: str | None = None,
                 settings_overrides: dict | None = None):
        settings = settings_with(settings_overrides)
        self.registry = load_registry(registry_path or settings.registry_path)
        self.entry = self.registry.get(algorithm)
        self.weights = make_weights_store(settings)
        self.runtime = RuntimeOptions(
            device=settings.device, tile_size=settings.tile_size, tile_overlap=settings.tile_overlap,
            threads=max(1, threads),
        )
        configure_threads(threads)
        # one inference at a time per replica: bounded memory, predictable latency
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{algorithm}")
        self.load_seconds: dict[str, float] = {}
        self.metrics = ReplicaMetrics(self.entry.name)
        self.probe_interval_s = settings.health_probe_interval_s
        self._last_probe = time.monotonic()
        self._last_dehazer = None
        self._busy = 0

    @serve.multiplexed(max_num_models_per_replica=MAX_VARIANTS_PER_REPLICA)
    async def load_variant(self, variant: str):
        t0 = time.perf_counter()
        dehazer = await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: create(self.entry.name, variant or None, self.weights,
                                           runtime=self.runtime, registry=self.registry)
        )
        self.load_seconds[variant] = time.perf_counter() - t0
        self.metrics.loaded(variant, self.load_seconds[variant])
        return dehazer

    async def dehaze(self, image: np.ndarray) -> dict:
        variant = serve.get_multiplexed_model_id()
        try:
            t0 = time.perf_counter()
            dehazer = await self.load_variant(variant)
            t1 = time.perf_counter()
            self._busy += 1
            try:
                out = await asyncio.get_running_loop().run_in_executor(self._executor, dehazer, image)
            finally:
                self._busy -= 1
            t2 = time.perf_counter()
            self._last_dehazer = dehazer
            self.metrics.haze_scores(variant, haze_score(image), haze_score(out))
            self.metrics.gpu()
        except DehazeError as exc:
            return {"error": to_wire(exc)}
        except Exception as exc:  # noqa: BLE001 - the client gets a clean 500, the log the details
            logger.exception("inference failed for %s/%s", self.entry.name, variant)
            return {"error": to_wire(ModelFailedError(f"{self.entry.name}/{variant} failed: {type(exc).__name__}"))}
        return {
            "image": out,
            "timings": {"load_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3},
            "device": dehazer.describe().get("device", "cpu"),
        }

    async def check_health(self) -> None:
        """Called by Serve every health_check_period_s; raising makes Serve replace the replica.

        Every probe: the device is usable. Every ``health_probe_interval_s`` (not every probe),
        when idle: a tiny inference through the most recently used model succeeds."""
        import torch

        if self.runtime.device.startswith("cuda") or (self.runtime.device == "auto" and torch.cuda.is_available()):
            torch.zeros(1, device="cuda").add_(1).item()
        due = time.monotonic() - self._last_probe >= self.probe_interval_s
        if due and self._busy == 0 and self._last_dehazer is not None:
            probe = np.full((16, 16, 3), 128, np.uint8)
            out = await asyncio.get_running_loop().run_in_executor(self._executor, self._last_dehazer, probe)
            if out.shape != probe.shape:
                raise RuntimeError("health probe inference returned a wrong shape")
            self._last_probe = time.monotonic()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """GPU utilisation (%) of this replica's device for GPUUtilizationPolicy; {} on CPU."""
        return gpu_autoscaling_stats(self.runtime.device)

    async def info(self) -> dict:
        return {"algorithm": self.entry.name, "loaded": sorted(self.load_seconds)}
