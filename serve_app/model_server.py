"""ModelServer: the one deployment class, instantiated once per algorithm of the registry.

Variants of the algorithm share the deployment through ``@serve.multiplexed`` (an LRU of
loaded checkpoints per replica, ``Settings.max_models_per_replica`` = DEHAZE_MAX_MODELS_PER_REPLICA
variants: the loader is wrapped per instance in ``__init__``, where the replica's settings are
known, since a class-level decorator would fix the number at import time). Payloads in and out are uint8 arrays; errors come back as
typed (class name, message) pairs so the ingress can answer with the right status.

Dynamic batching (``@serve.batch``): requests that arrive together for a network marked
``batchable`` are grouped by (variant, image shape) and each group runs as one forward. The
batch budget counts pixels: an image costs ``ceil(pixels / slot_pixels)`` slots (at most
``max_batch_size``), so eight 512x512 images or two 1024x1024 ones fill a batch of 8 slots.
Options come from the deployment's ``user_config`` (:class:`BatchingConfig`), so they can be
changed on a running deployment; ``max_batch_size: 1`` turns batching off.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from algorithms.common.quality import haze_score
from algorithms.errors import DehazeError
from algorithms.registry import create, load_registry
from serve_app.autoscaling import gpu_autoscaling_stats
from serve_app.errors import ModelFailedError, to_wire
from serve_app.metrics import ReplicaMetrics
from serve_app.settings import settings_with
from serve_app.storage import make_weights_store

logger = logging.getLogger("ray.serve")

def configure_threads(threads: int) -> None:
    """Size the math libraries' thread pools to the replica's CPUs (no oversubscription)."""
    import cv2
    import torch

    threads = max(1, threads)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class BatchingConfig(BaseModel):
    """``user_config`` of a ModelServer deployment (validated by ``reconfigure``)."""

    model_config = ConfigDict(extra="forbid")
    #: batch budget in slots; 1 = no batching
    max_batch_size: int = Field(1, ge=1, le=256)
    #: how long the first request of a batch waits for others
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=5)
    #: pixels per slot (default 512 x 512)
    slot_pixels: int = Field(512 * 512, ge=1024)


@dataclass
class _BatchItem:
    variant: str
    #: Dehazer.batch_key of the image: only equal keys share a forward
    key: object
    image: np.ndarray
    #: cost in the batch budget (BatchingConfig)
    slots: int = 1


class ModelServer:
    def __init__(self, algorithm: str, threads: int = 1, registry_path: str | None = None,
                 settings_overrides: dict | None = None):
        settings = settings_with(settings_overrides)
        self.registry = load_registry(registry_path or settings.registry_path)
        self.entry = self.registry.get(algorithm)
        self.weights = make_weights_store(settings)
        self.runtime = settings.runtime(threads=max(1, threads))
        configure_threads(threads)
        # one inference at a time per replica: bounded memory, predictable latency
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{algorithm}")
        self.load_seconds: dict[str, float] = {}
        self.metrics = ReplicaMetrics(self.entry.name)
        self.probe_interval_s = settings.health_probe_interval_s
        self._last_probe = time.monotonic()
        self._last_dehazer = None
        self._busy = 0
        self.batching = BatchingConfig()
        self.max_variants = settings.max_models_per_replica
        self.load_variant = self._multiplexed_loader(self.max_variants)

    def _multiplexed_loader(self, max_variants: int):
        """``load_variant(variant) -> Dehazer``: the LRU of loaded variants (``@serve.multiplexed``
        over a per-instance function, which Serve detects on the replica instance)."""

        async def load_variant(variant: str):
            return await self._load_variant(variant)

        return serve.multiplexed(max_num_models_per_replica=max_variants)(load_variant)

    def reconfigure(self, user_config: dict | None) -> None:
        """Serve calls this with the deployment's ``user_config`` (batching options)."""
        self.batching = BatchingConfig.model_validate(user_config or {})
        self._dehaze_batched.set_max_batch_size(self.batching.max_batch_size)
        self._dehaze_batched.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)

    def _slots(self, image: np.ndarray) -> int:
        pixels = image.shape[0] * image.shape[1]
        return min(self.batching.max_batch_size, math.ceil(pixels / self.batching.slot_pixels))

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.01, batch_size_fn=lambda items: sum(it.slots for it in items))
    async def _dehaze_batched(self, items: list[_BatchItem]) -> list[tuple[np.ndarray, int] | BaseException]:
        """Run each (variant, shape) group of a batch as one forward; (image, group size) or the
        exception, in request order."""
        groups: dict[tuple[str, object], list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault((it.variant, it.key), []).append(i)
        results: list = [None] * len(items)
        loop = asyncio.get_running_loop()
        for (variant, _), idx in groups.items():
            try:
                dehazer = await self.load_variant(variant)
                outs = await loop.run_in_executor(self._executor, dehazer.dehaze_batch, [items[i].image for i in idx])
                self.metrics.batch(variant, len(idx))
            except Exception as exc:  # noqa: BLE001 - handed to each request of the group
                outs = [exc] * len(idx)
            for i, out in zip(idx, outs):
                results[i] = out if isinstance(out, BaseException) else (out, len(idx))
        return results

    async def _run(self, dehazer, variant: str, image: np.ndarray) -> tuple[np.ndarray, int]:
        """(result, number of images in the forward that made it)."""
        key = dehazer.batch_key(image) if self.batching.max_batch_size > 1 else None
        if key is None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, dehazer, image), 1
        out = await self._dehaze_batched(_BatchItem(variant, key, image, self._slots(image)))
        if isinstance(out, BaseException):
            raise out
        return out

    async def _load_variant(self, variant: str):
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
                out, batch_size = await self._run(dehazer, variant, image)
            finally:
                self._busy -= 1
            t2 = time.perf_counter()
            self._last_dehazer = dehazer
            # on a <= 512 px copy: ~1 ms instead of ~15 ms per 1080p image (a metric, not a score)
            self.metrics.haze_scores(variant, haze_score(image, max_side=512), haze_score(out, max_side=512))
            self.metrics.gpu(variant)
        except DehazeError as exc:
            return {"error": to_wire(exc)}
        except Exception as exc:  # noqa: BLE001 - the client gets a clean 500, the log the details
            logger.exception("inference failed for %s/%s", self.entry.name, variant)
            return {"error": to_wire(ModelFailedError(f"{self.entry.name}/{variant} failed: {type(exc).__name__}"))}
        return {
            "image": out,
            "timings": {"load_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3},
            "device": dehazer.describe().get("device", "cpu"),
            "batch_size": batch_size,
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
