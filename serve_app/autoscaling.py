"""GPU-utilisation-aware autoscaling for the algorithm deployments.

Keeps the GPU utilisation of an algorithm's replicas inside a target band (default 65 % ± 5 %,
the legacy system's goal), with the requests in flight as a guard:

* **idle but queued** - utilisation can read low while requests wait (weights loading, CPU-bound
  decode/encode, a stale reading): then the deployment never shrinks and grows to the request
  demand (``ceil(ongoing / target_ongoing_requests)``);
* **busy without requests** - a GPU shared with other tenants can read high while this
  deployment has nothing to do: utilisation alone never scales it up;
* **flapping** - the band is a dead zone; a scale-up goes to ``ceil(n * u / (target + tol))``
  (predicted utilisation back under the band's top) and a scale-down to ``ceil(n * u / target)``
  (predicted utilisation at most the target), so under a steady load neither rule undoes the
  other; steps are bounded, and separate cool-downs follow every change of the replica target.

The decision is the pure function :func:`decide_replicas` (unit-tested as a simulation in
tests/test_autoscaling_policy.py); :class:`GPUUtilizationPolicy` is the thin adapter Ray Serve
calls. Ray Serve 2.60 API used (ray/serve/config.py, autoscaling_policy.py, _private/replica.py):

* ``autoscaling_config.policy = {policy_function: "serve_app.autoscaling:GPUUtilizationPolicy",
  policy_kwargs: {...}}`` - a *class* is instantiated once with ``policy_kwargs`` and called
  with an ``AutoscalingContext`` every control-loop tick; it returns ``(replicas, policy_state)``.
  Serve wraps it (``_apply_autoscaling_config``): cold start from zero, ``upscaling_factor`` /
  ``downscaling_factor``, ``upscale_delay_s`` / ``downscale_delay_s``, then clips to
  ``[min_replicas, max_replicas]`` (capacity adjusted).
* Replicas report custom metrics with a deployment method ``record_autoscaling_stats() ->
  dict[str, float]``; Serve samples it every ``0.2 * look_back_period_s`` and pushes every
  ``RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S`` (10 s); the policy reads
  ``ctx.aggregated_metrics["gpu_utilization"][replica_id]`` (aggregated over the look-back
  window by ``aggregation_function``). Replicas on CPU report nothing: the policy then scales
  on ongoing requests alone, like Serve's default policy.

Note: ``torch.cuda.utilization`` is a whole-device reading. Replicas with fractional GPUs that
share a device report the device's utilisation, including the other tenants' work; the
"busy without requests" guard keeps that from scaling an idle deployment up.

This module is cloudpickled by value into the Serve controller: keep it free of heavy imports
at module level (torch is imported lazily by :func:`gpu_autoscaling_stats` only).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable

logger = logging.getLogger("ray.serve")

#: name of the custom metric replicas report (percent, 0..100)
GPU_UTILIZATION_METRIC = "gpu_utilization"

# keys of this policy in Serve's policy_state (Serve's own keys are kept untouched)
_STATE_TARGET = "gpu_policy.last_target"
_STATE_CHANGED_AT = "gpu_policy.changed_at"
_STATE_REASON = "gpu_policy.reason"
_STATE_UTIL = "gpu_policy.mean_utilization"
_STATE_ASKED = "gpu_policy.asked"


@dataclass(frozen=True)
class GPUPolicyConfig:
    """Knobs of the policy (``autoscaling_config.policy.policy_kwargs`` in configs/serve.yaml)."""

    #: utilisation the replicas should run at, percent
    target_utilization: float = 65.0
    #: half-width of the dead band around the target, percent (65 ± 5 -> 60..70)
    tolerance: float = 5.0
    min_replicas: int = 0
    max_replicas: int = 1_000_000
    #: requests (running + queued) one replica should hold; the request guard and the CPU
    #: fallback. None: the deployment's own ``autoscaling_config.target_ongoing_requests``.
    target_ongoing_requests: float | None = None
    #: queued requests per replica above which low utilisation never shrinks the deployment
    queue_guard_per_replica: float = 0.5
    #: most replicas added / removed by one decision
    max_scale_up_step: int = 4
    max_scale_down_step: int = 1
    #: seconds after a change of the replica target before the next scale-up / scale-down
    upscale_cooldown_s: float = 30.0
    downscale_cooldown_s: float = 120.0
    #: at least this fraction of running replicas must report utilisation to trust it
    min_reporting_fraction: float = 0.5

    def __post_init__(self):
        if not 0 < self.target_utilization <= 100:
            raise ValueError("target_utilization must be in (0, 100]")
        if not (0 <= self.tolerance < self.target_utilization and self.target_utilization + self.tolerance <= 100):
            raise ValueError("tolerance must be >= 0 and keep the band inside (0, 100]")
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            raise ValueError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if self.target_ongoing_requests is not None and self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")
        if self.max_scale_up_step < 1 or self.max_scale_down_step < 1:
            raise ValueError("scale steps must be >= 1")
        if self.upscale_cooldown_s < 0 or self.downscale_cooldown_s < 0:
            raise ValueError("cool-downs must be >= 0")
        if not 0 <= self.min_reporting_fraction <= 1:
            raise ValueError("min_reporting_fraction must be in [0, 1]")

    @property
    def band(self) -> tuple[float, float]:
        return self.target_utilization - self.tolerance, self.target_utilization + self.tolerance


@dataclass(frozen=True)
class Decision:
    #: the replica count to ask for (after cool-downs and bounds)
    replicas: int
    reason: str
    mean_utilization: float | None = None
    #: what the signals wanted before cool-downs and bounds: "up", "down" or "hold"
    intent: str = "hold"


def _clamp(n: int, cfg: GPUPolicyConfig) -> int:
    return max(cfg.min_replicas, min(cfg.max_replicas, n))


def _request_demand(ongoing: float, per_replica: float) -> int:
    return math.ceil(ongoing / per_replica - 1e-9) if ongoing > 0 else 0


def decide_replicas(
    current: int,
    utilizations: Iterable[float],
    ongoing_requests: float,
    queued_requests: float,
    since_last_change_s: float,
    config: GPUPolicyConfig,
    target: int | None = None,
) -> Decision:
    """The replica count an algorithm deployment should have.

    current: running replicas; utilizations: the GPU utilisation (percent) each reporting replica
    saw over the look-back window (none on CPU); ongoing_requests: running + queued requests of
    the deployment; queued_requests: those still waiting at handles; since_last_change_s: seconds
    since the replica target last changed; target: the replica target now in force (default
    ``current``; larger while new replicas are still starting). Pure: no clock, no Ray.
    """
    cfg = config
    per_replica = cfg.target_ongoing_requests or 2.0
    ongoing = max(0.0, float(ongoing_requests or 0.0))
    queued = max(0.0, float(queued_requests or 0.0))
    need = _request_demand(ongoing, per_replica)

    if current <= 0:
        # cold start: no cool-down, requests decide (Serve has the same fast path)
        desired = _clamp(max(need, 1 if ongoing > 0 else 0), cfg)
        return Decision(desired, "cold start", None, "up" if desired > 0 else "hold")

    utils = [min(100.0, max(0.0, float(u))) for u in utilizations if u is not None and math.isfinite(float(u))]
    lo, hi = cfg.band
    mean = sum(utils) / len(utils) if utils else None
    trusted = bool(utils) and len(utils) >= math.ceil(cfg.min_reporting_fraction * current - 1e-9)

    if not trusted:
        # CPU replicas, or GPU replicas that have not reported yet: requests alone
        if need > current:
            desired, reason = min(need, current + cfg.max_scale_up_step), "requests above target (no GPU signal)"
        elif need < current and queued <= 0:
            desired, reason = max(need, current - cfg.max_scale_down_step), "requests below target (no GPU signal)"
        else:
            desired, reason = current, "requests at target (no GPU signal)"
    elif mean > hi:
        if ongoing <= 0:
            desired, reason = current, "GPU busy without requests of ours: hold"
        else:
            # fewest replicas whose predicted utilisation, mean * current / desired, is back
            # under the band's top; the scale-down rule below aims at the target itself, so
            # neither undoes the other under a steady load
            want = math.ceil(current * mean / hi - 1e-9)
            desired = min(max(want, current + 1), current + cfg.max_scale_up_step)
            reason = "utilisation above band"
    elif mean < lo:
        if queued > cfg.queue_guard_per_replica * current or need > current:
            # idle but queued: the reading is not the bottleneck, the queue is
            desired = current if need <= current else min(need, current + cfg.max_scale_up_step)
            reason = "utilisation below band but requests queued: hold or grow on requests"
        else:
            # predicted utilisation after the change, mean * current / desired, stays <= target
            want = math.ceil(current * mean / cfg.target_utilization - 1e-9)
            desired = min(max(want, need, current - cfg.max_scale_down_step), current)
            reason = "utilisation below band"
    else:
        # in band: hold. A backlog left from a saturated spell drains at this capacity; growing
        # on it would overshoot and be undone later (flapping).
        desired, reason = current, "utilisation in band"

    intent = "up" if desired > current else "down" if desired < current else "hold"
    target = current if target is None else target
    if desired > current and since_last_change_s < cfg.upscale_cooldown_s:
        desired, reason = max(target, current), f"{reason}; upscale cool-down"
    elif desired < current and since_last_change_s < cfg.downscale_cooldown_s:
        desired, reason = target, f"{reason}; downscale cool-down"
    if target > current and desired < target and intent != "down":
        # a scale-up is still starting replicas (e.g. waiting for a GPU node): keep it
        desired, reason = target, f"{reason}; replicas still starting"
    bounded = _clamp(desired, cfg)
    if bounded != desired:
        reason = f"{reason}; clipped to [{cfg.min_replicas}, {cfg.max_replicas}]"
    return Decision(bounded, reason, mean, intent)


def utilizations_from_metrics(aggregated: dict[str, dict[Any, float]] | None, replicas: Iterable[Any] | None = None) -> list[float]:
    """The GPU utilisations in Serve's aggregated custom metrics, for the running replicas."""
    per_replica = (aggregated or {}).get(GPU_UTILIZATION_METRIC) or {}
    if replicas is None:
        return list(per_replica.values())
    wanted = set(replicas)
    return [v for r, v in per_replica.items() if r in wanted]


class GPUUtilizationPolicy:
    """The adapter Ray Serve calls: ``autoscaling_config.policy.policy_function``.

    ``policy_kwargs`` are :class:`GPUPolicyConfig` fields (min/max replicas come from the
    deployment's autoscaling_config, capacity adjusted, and need not be given).
    """

    def __init__(self, **policy_kwargs: Any):
        known = {f.name for f in fields(GPUPolicyConfig)}
        unknown = sorted(set(policy_kwargs) - known)
        if unknown:
            raise ValueError(f"GPUUtilizationPolicy: unknown policy_kwargs {unknown}; known: {sorted(known)}")
        self.config = GPUPolicyConfig(**policy_kwargs)

    def __call__(self, ctx) -> tuple[int, dict[str, Any]]:
        state = dict(ctx.policy_state or {})
        now = ctx.current_time if ctx.current_time is not None else time.time()
        target = ctx.target_num_replicas
        if state.get(_STATE_TARGET) != target:
            # the target changed since our last tick: when we asked for it, if we did (Serve's
            # delays may have held it back), else now; nothing known on the first tick
            asked = state.get(_STATE_ASKED)
            if asked and asked[0] == target:
                state[_STATE_CHANGED_AT] = asked[1]
            else:
                state[_STATE_CHANGED_AT] = now if _STATE_TARGET in state else None
            state[_STATE_TARGET] = target
        changes = [t for t in (state.get(_STATE_CHANGED_AT), ctx.last_scale_up_time, ctx.last_scale_down_time) if t]
        since = now - max(changes) if changes else math.inf

        per_replica = self.config.target_ongoing_requests
        if per_replica is None and ctx.config is not None:
            per_replica = ctx.config.get_target_ongoing_requests()
        cfg = replace(self.config, target_ongoing_requests=per_replica,
                      min_replicas=ctx.capacity_adjusted_min_replicas,
                      max_replicas=max(1, ctx.capacity_adjusted_max_replicas, ctx.capacity_adjusted_min_replicas))
        try:
            utils = utilizations_from_metrics(ctx.aggregated_metrics, ctx.running_replicas)
        except Exception:  # noqa: BLE001 - metrics unavailable: requests alone decide
            logger.warning("gpu autoscaling: custom metrics unavailable for %s", ctx.deployment_name, exc_info=True)
            utils = []
        current = ctx.current_num_replicas
        decision = decide_replicas(current, utils, ctx.total_num_requests or 0.0,
                                   ctx.total_queued_requests or 0.0, since, cfg, target=target)
        replicas = decision.replicas
        state[_STATE_REASON] = decision.reason
        asked = state.get(_STATE_ASKED)
        if replicas != target and not (asked and asked[0] == replicas):
            state[_STATE_ASKED] = [replicas, now]
        elif replicas == target:
            state.pop(_STATE_ASKED, None)
        state[_STATE_UTIL] = decision.mean_utilization
        if replicas != target:
            logger.info("gpu autoscaling %s: %d -> %d replicas (%s; mean utilisation %s, ongoing %.1f)",
                        ctx.deployment_name, target, replicas, decision.reason,
                        "n/a" if decision.mean_utilization is None else f"{decision.mean_utilization:.0f}%",
                        ctx.total_num_requests or 0.0)
        return replicas, state


def gpu_utilization_policy(ctx) -> tuple[int, dict[str, Any]]:
    """The policy with its default knobs, as a plain function (``policy_function`` path)."""
    return _DEFAULT_POLICY(ctx)


_DEFAULT_POLICY = GPUUtilizationPolicy()


def gpu_autoscaling_stats(device: str | None = None) -> dict[str, float]:
    """What a replica returns from ``record_autoscaling_stats``: the utilisation (percent) of the
    CUDA device it runs on, ``{}`` without CUDA (CPU replicas report nothing) or when the reading
    fails (``torch.cuda.utilization`` needs NVML, the ``nvidia-ml-py`` package)."""
    if device is not None and str(device).startswith("cpu"):
        return {}
    try:
        import torch

        if not torch.cuda.is_available():
            return {}
        index = torch.device(device).index if device and str(device).startswith("cuda") else None
        if index is None:
            index = torch.cuda.current_device()
        return {GPU_UTILIZATION_METRIC: float(torch.cuda.utilization(index))}
    except Exception:  # noqa: BLE001 - no NVML, no device: report nothing, the policy uses requests
        return {}


__all__ = [
    "GPU_UTILIZATION_METRIC", "GPUPolicyConfig", "Decision", "decide_replicas", "GPUUtilizationPolicy",
    "gpu_utilization_policy", "gpu_autoscaling_stats", "utilizations_from_metrics",
]
