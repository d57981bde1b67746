"""Prometheus metrics of the service, exported through Ray's metrics endpoint.

Created inside each replica (never at import time) with ``ray.serve.metrics``, which adds the
deployment / replica / application tags. Ray prefixes every name with ``ray_`` on export, so
``dehaze_requests_total`` is scraped as ``ray_dehaze_requests_total``.

| metric | kind | tags |
|---|---|---|
| dehaze_requests_total | counter | model, variant, route |
| dehaze_errors_total | counter | model, variant, route, code (HTTP status; 401 and 429 included) |
| dehaze_cache_hits_total | counter | model, variant |
| dehaze_stage_latency_ms | histogram | model, variant, stage (decode, queue, load, inference, encode) |
| dehaze_input_megapixels | histogram | model, variant |
| dehaze_haze_score | histogram | model, variant, side (input, output): mean dark channel, see algorithms/common/quality.py |
| dehaze_model_load_seconds | histogram | model, variant |
| dehaze_batch_size | histogram | model, variant (images per forward under dynamic batching) |
| dehaze_gpu_memory_bytes, dehaze_gpu_utilization | gauge | model, variant (only where CUDA is present) |

``route``: dehaze, evaluate, legacy_prediction, legacy_evaluation, models, objects. ``model`` and
``variant`` are registry names: ``none`` (and an empty variant) on routes without a model,
``unknown`` for a name the registry does not know (clients never choose label values). The GPU
gauges carry the variant the replica ran last; the series of the variant it ran before drops to 0,
so sums over variants count each replica once.
"""
from __future__ import annotations

LATENCY_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000]
MEGAPIXEL_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]
HAZE_BUCKETS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
LOAD_S_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60, 120]
BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 32]

METRIC_NAMES = (
    "dehaze_requests_total", "dehaze_errors_total", "dehaze_cache_hits_total", "dehaze_stage_latency_ms",
    "dehaze_input_megapixels", "dehaze_haze_score", "dehaze_model_load_seconds", "dehaze_gpu_memory_bytes",
    "dehaze_gpu_utilization", "dehaze_batch_size",
)
#: exported only where they apply: GPU gauges with CUDA, batch sizes for batched networks
CONDITIONAL_METRICS = ("dehaze_gpu_memory_bytes", "dehaze_gpu_utilization", "dehaze_batch_size")


class IngressMetrics:
    def __init__(self):
        from ray.serve.metrics import Counter, Histogram

        self.requests = Counter("dehaze_requests_total", description="Requests by model, variant and route",
                                tag_keys=("model", "variant", "route"))
        self.errors = Counter("dehaze_errors_total", description="Error replies by model, variant, route and status",
                              tag_keys=("model", "variant", "route", "code"))
        self.cache_hits = Counter("dehaze_cache_hits_total", description="Results served from the result cache",
                                  tag_keys=("model", "variant"))
        self.latency = Histogram("dehaze_stage_latency_ms", description="Latency of each request stage (ms)",
                                 boundaries=LATENCY_MS_BUCKETS, tag_keys=("model", "variant", "stage"))
        self.megapixels = Histogram("dehaze_input_megapixels", description="Input size in megapixels",
                                    boundaries=MEGAPIXEL_BUCKETS, tag_keys=("model", "variant"))

    def request(self, model: str, variant: str, route: str) -> None:
        self.requests.inc(tags={"model": model, "variant": variant, "route": route})

    def error(self, model: str, variant: str, route: str, status: int) -> None:
        self.errors.inc(tags={"model": model, "variant": variant, "route": route, "code": str(status)})

    def stages(self, model: str, variant: str, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.latency.observe(ms, tags={"model": model, "variant": variant, "stage": stage})


class ReplicaMetrics:
    def __init__(self, model: str):
        from ray.serve.metrics import Gauge, Histogram

        self.model = model
        self.haze = Histogram("dehaze_haze_score", description="No-reference haze score (mean dark channel)",
                              boundaries=HAZE_BUCKETS, tag_keys=("model", "variant", "side"))
        self.load = Histogram("dehaze_model_load_seconds", description="Checkpoint load + build time (s)",
                              boundaries=LOAD_S_BUCKETS, tag_keys=("model", "variant"))
        self.batch_sizes = Histogram("dehaze_batch_size", description="Images per forward (dynamic batching)",
                                     boundaries=BATCH_BUCKETS, tag_keys=("model", "variant"))
        self.gpu_memory = Gauge("dehaze_gpu_memory_bytes", description="CUDA memory allocated by the replica",
                                tag_keys=("model", "variant"))
        self.gpu_util = Gauge("dehaze_gpu_utilization", description="GPU utilisation (0-100) seen by the replica",
                              tag_keys=("model", "variant"))
        #: the variant whose series the GPU gauges were last set on
        self._gpu_variant: str | None = None

    def haze_scores(self, variant: str, before: float, after: float) -> None:
        self.haze.observe(before, tags={"model": self.model, "variant": variant, "side": "input"})
        self.haze.observe(after, tags={"model": self.model, "variant": variant, "side": "output"})

    def batch(self, variant: str, size: int) -> None:
        self.batch_sizes.observe(size, tags={"model": self.model, "variant": variant})

    def loaded(self, variant: str, seconds: float) -> None:
        self.load.observe(seconds, tags={"model": self.model, "variant": variant})

    def gpu(self, variant: str) -> float | None:
        """Update the GPU gauges after running ``variant``; returns the utilisation (None without CUDA)."""
        import torch

        if not torch.cuda.is_available():
            return None
        previous, self._gpu_variant = self._gpu_variant, variant
        if previous is not None and previous != variant:  # one live series per replica
            stale = {"model": self.model, "variant": previous}
            self.gpu_memory.set(0, tags=stale)
            self.gpu_util.set(0, tags=stale)
        tags = {"model": self.model, "variant": variant}
        self.gpu_memory.set(torch.cuda.memory_allocated(), tags=tags)
        try:
            util = float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - NVML missing: memory only
            return None
        self.gpu_util.set(util, tags=tags)
        return util
