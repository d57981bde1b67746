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

from algorithms.common.runtime import RuntimeOptions
from algorithms.errors import DehazeError
from algorithms.registry import create, load_registry
from serve_app.errors import ModelFailedError, to_wire
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

    @serve.multiplexed(max_num_models_per_replica=MAX_VARIANTS_PER_REPLICA)
    async def load_variant(self, variant: str):
        t0 = time.perf_counter()
        dehazer = await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: create(self.entry.name, variant or None, self.weights,
                                           runtime=self.runtime, registry=self.registry)
        )
        self.load_seconds[variant] = time.perf_counter() - t0
        return dehazer

    async def dehaze(self, image: np.ndarray) -> dict:
        variant = serve.get_multiplexed_model_id()
        try:
            t0 = time.perf_counter()
            dehazer = await self.load_variant(variant)
            t1 = time.perf_counter()
            out = await asyncio.get_running_loop().run_in_executor(self._executor, dehazer, image)
            t2 = time.perf_counter()
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

    async def info(self) -> dict:
        return {"algorithm": self.entry.name, "loaded": sorted(self.load_seconds)}
