"""The GPU-utilisation-aware autoscaling policy (serve_app/autoscaling.py).

Simulations of the pure decision function against synthetic load and utilisation traces
(converge into the band, scale down after load drops, no oscillation, min/max respected, the
request guards), and the adapter driven through Ray Serve's own policy wrapper.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from serve_app.autoscaling import (
    GPU_UTILIZATION_METRIC,
    GPUPolicyConfig,
    GPUUtilizationPolicy,
    decide_replicas,
    gpu_autoscaling_stats,
)

TICK_S = 10.0


@dataclass
class SimDeployment:
    """A synthetic algorithm deployment.

    ``demand`` is GPU work in replica-equivalents (2.6 = 2.6 replicas' GPUs busy all the time).
    Each running replica reports ``min(100, 100 * demand / n)`` percent plus noise. Requests in
    flight follow the demand (``requests_per_busy_replica``); demand beyond the running replicas
    piles up in a queue. New replicas take ``startup_ticks`` to start; removals are immediate.
    """

    config: GPUPolicyConfig
    replicas: int = 1
    startup_ticks: int = 3
    noise: float = 2.0
    requests_per_busy_replica: float = 1.5
    seed: int = 0
    target: int = field(init=False)
    pending: list = field(default_factory=list)
    last_change_t: float = -1e9
    t: float = 0.0
    queued: float = 0.0
    history: list = field(default_factory=list)  # (t, running, target, mean utilisation)

    def __post_init__(self):
        self.target = self.replicas
        self.rng = random.Random(self.seed)

    def observe(self, demand: float):
        n = self.replicas
        if n == 0:
            self.queued += demand * 2
            return [], self.queued, self.queued
        busy = min(demand, n)
        utils = [min(100.0, max(0.0, 100.0 * busy / n + self.rng.uniform(-self.noise, self.noise))) for _ in range(n)]
        overflow = max(0.0, demand - n)
        self.queued = self.queued + overflow * 3 if overflow > 0 else max(0.0, self.queued - n * 3)
        ongoing = busy * self.requests_per_busy_replica + self.queued
        return utils, ongoing, self.queued

    def step(self, demand: float, utils_override=None):
        utils, ongoing, queued = self.observe(demand)
        if utils_override is not None:
            utils = utils_override(utils)
        d = decide_replicas(self.replicas, utils, ongoing, queued, self.t - self.last_change_t, self.config,
                            target=self.target)
        if d.replicas != self.target:
            self.last_change_t = self.t
            if d.replicas > self.target:
                self.pending += [self.t + self.startup_ticks * TICK_S] * (d.replicas - self.target)
            else:
                drop = self.target - d.replicas
                cancel = min(drop, len(self.pending))
                self.pending = self.pending[: len(self.pending) - cancel]
                self.replicas -= drop - cancel
            self.target = d.replicas
        self.t += TICK_S
        started = [p for p in self.pending if p <= self.t]
        self.pending = [p for p in self.pending if p > self.t]
        self.replicas += len(started)
        mean = sum(utils) / len(utils) if utils else None
        self.history.append((self.t, self.replicas, self.target, mean))
        return d

    def run(self, demand, minutes: float):
        for _ in range(int(minutes * 60 / TICK_S)):
            self.step(demand(self.t) if callable(demand) else demand)
        return self


def targets(sim: SimDeployment, since_s: float = 0.0) -> list[int]:
    return [tgt for t, _, tgt, _ in sim.history if t >= since_s]


def reversals(seq: list[int]) -> int:
    """How often the direction of change flips (up then down or down then up)."""
    dirs = [1 if b > a else -1 for a, b in zip(seq, seq[1:]) if b != a]
    return sum(1 for a, b in zip(dirs, dirs[1:]) if a != b)


CFG = GPUPolicyConfig(min_replicas=0, max_replicas=10, target_ongoing_requests=2)


@pytest.mark.parametrize("demand,expected", [(1.3, 2), (2.6, 4), (3.9, 6), (5.2, 8)])
@pytest.mark.parametrize("start", [1, 10])
def test_converges_into_band(demand, expected, start):
    sim = SimDeployment(CFG, replicas=start, seed=int(demand * 10) + start).run(demand, minutes=40)
    assert sim.replicas == sim.target == expected, sim.history[-5:]
    lo, hi = CFG.band
    tail = [u for t, _, _, u in sim.history if t >= sim.t - 600]
    mean_tail = sum(tail) / len(tail)
    assert lo <= mean_tail <= hi, mean_tail
    # the way there is monotonic: no overshoot and correction
    assert reversals(targets(sim)) == 0, targets(sim)


def test_scales_down_after_load_drops_and_to_zero_when_idle():
    sim = SimDeployment(CFG, replicas=1, seed=3)
    sim.run(3.9, minutes=20)
    assert sim.replicas == 6
    sim.run(0.62, minutes=30)           # load drops: one replica at ~62 %
    assert sim.replicas == sim.target == 1, targets(sim)[-20:]
    ups_after_drop = [b for a, b in zip(targets(sim), targets(sim)[1:]) if b > a and a >= 6]
    assert not ups_after_drop
    sim.run(0.0, minutes=10)            # no load at all: down to min_replicas (0 here)
    assert sim.replicas == 0


def test_downscale_is_paced_by_cooldown_and_step():
    cfg = GPUPolicyConfig(min_replicas=0, max_replicas=10, target_ongoing_requests=2,
                          downscale_cooldown_s=120, max_scale_down_step=1)
    sim = SimDeployment(cfg, replicas=8, seed=4)
    sim.run(0.62, minutes=30)
    changes = [(t, a, b) for (t, _, a, _), (_, _, b, _) in zip(sim.history, sim.history[1:]) if b != a]
    assert all(a - b == 1 for _, a, b in changes)
    times = [t for t, _, _ in changes]
    assert all(b - a >= 120 for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("demand", [1.0, 1.45, 2.2, 3.3, 4.75])
def test_no_oscillation_when_band_is_unreachable_or_noisy(demand):
    # e.g. demand 1.0: one replica runs at 100 %, two at 50 %; neither is in the band. The
    # policy must settle (at the count under the band) instead of flapping between them.
    sim = SimDeployment(CFG, replicas=1, seed=int(demand * 100), noise=2.0).run(demand, minutes=120)
    seq = targets(sim)
    assert reversals(seq) == 0, seq
    settled = targets(sim, since_s=30 * 60)
    # settled: at most one more step in 90 minutes (noise right at a band edge), never back
    assert len(set(settled)) <= 2 and settled == sorted(settled), settled
    n = settled[-1]
    assert 100 * demand / n <= CFG.band[1] + 1  # not left above the band


def test_no_oscillation_under_periodic_load():
    # a daily-ish wave (compressed): replica count follows it up and down, but never flaps
    # within one half period
    def wave(t):
        return 3.0 + 2.0 * math.sin(2 * math.pi * t / 7200)

    sim = SimDeployment(CFG, replicas=4, seed=7).run(wave, minutes=240)
    seq = targets(sim)
    assert max(seq) <= 9 and min(seq) >= 1
    # a sine has two turning points per period: 4 periods -> at most ~8 direction changes
    assert reversals(seq) <= 8, seq
    # and each scale-up direction is not undone within 2 minutes
    changes = [(t, b - a) for (t, _, a, _), (_, _, b, _) in zip(sim.history, sim.history[1:]) if b != a]
    for (t1, d1), (t2, d2) in zip(changes, changes[1:]):
        if (d1 > 0) != (d2 > 0):
            assert t2 - t1 >= 120


def test_respects_max_replicas():
    cfg = GPUPolicyConfig(min_replicas=1, max_replicas=6, target_ongoing_requests=2)
    sim = SimDeployment(cfg, replicas=1, seed=5).run(20.0, minutes=30)
    assert max(targets(sim)) == 6 and sim.replicas == 6


def test_respects_min_replicas():
    cfg = GPUPolicyConfig(min_replicas=2, max_replicas=6, target_ongoing_requests=2)
    sim = SimDeployment(cfg, replicas=5, seed=6).run(0.0, minutes=30)
    assert min(targets(sim)) == 2 and sim.replicas == 2


def test_scale_up_is_bounded_per_step_and_cooled_down():
    cfg = GPUPolicyConfig(max_replicas=50, target_ongoing_requests=2, max_scale_up_step=4, upscale_cooldown_s=30)
    sim = SimDeployment(cfg, replicas=1, seed=8).run(30.0, minutes=20)
    changes = [(t, b - a) for (t, _, a, _), (_, _, b, _) in zip(sim.history, sim.history[1:]) if b != a]
    assert all(0 < d <= 4 for _, d in changes)
    assert all(t2 - t1 >= 30 for (t1, _), (t2, _) in zip(changes, changes[1:]))
    assert sim.target >= 40


# --- the guards, one decision at a time -----------------------------------------------------

def test_idle_but_queued_never_shrinks_and_grows_on_requests():
    # replicas read 5 % (e.g. loading weights) while 20 requests wait
    d = decide_replicas(2, [5.0, 5.0], ongoing_requests=24, queued_requests=20, since_last_change_s=1e9, config=CFG)
    assert d.replicas > 2 and d.intent == "up"
    assert d.replicas == 2 + CFG.max_scale_up_step  # request demand 12, bounded by the step
    d = decide_replicas(4, [5.0] * 4, ongoing_requests=6, queued_requests=3, since_last_change_s=1e9, config=CFG)
    assert d.replicas == 4


def test_idle_but_queued_in_simulation():
    # utilisation stuck at 0 (stale NVML reading / warm-up) while the queue grows
    sim = SimDeployment(CFG, replicas=3, seed=9)
    for _ in range(60):
        sim.step(6.0, utils_override=lambda u: [0.0] * len(u))
    assert min(targets(sim)) >= 3 and sim.target > 3


def test_busy_gpu_without_requests_does_not_scale_up():
    d = decide_replicas(2, [95.0, 97.0], ongoing_requests=0, queued_requests=0, since_last_change_s=1e9, config=CFG)
    assert d.replicas == 2


def test_in_band_holds():
    d = decide_replicas(4, [62.0, 66.0, 69.0, 63.0], 6, 0, 1e9, CFG)
    assert d.replicas == 4 and d.intent == "hold"


def test_scale_down_target_never_predicts_above_band():
    for n in range(1, 11):
        for u in range(0, 60):
            d = decide_replicas(n, [float(u)] * n, ongoing_requests=0.5, queued_requests=0,
                                since_last_change_s=1e9, config=CFG)
            if 0 < d.replicas < n:
                assert u * n / d.replicas <= CFG.target_utilization + 1e-9


def test_without_gpu_signal_scales_on_requests():
    # CPU replicas report nothing: the policy behaves like Serve's request-based default
    d = decide_replicas(1, [], ongoing_requests=7, queued_requests=3, since_last_change_s=1e9, config=CFG)
    assert d.replicas == 4  # ceil(7 / 2)
    d = decide_replicas(4, [], ongoing_requests=1, queued_requests=0, since_last_change_s=1e9, config=CFG)
    assert d.replicas == 3  # one step down
    # too few replicas reporting (new ones warming up): the reading is not trusted
    d = decide_replicas(4, [100.0], ongoing_requests=2, queued_requests=0, since_last_change_s=1e9, config=CFG)
    assert d.replicas == 4 - 1 or d.replicas == 4


def test_cooldowns():
    d = decide_replicas(2, [95.0, 95.0], 6, 2, since_last_change_s=5, config=CFG)
    assert d.replicas == 2 and d.intent == "up" and "cool-down" in d.reason
    d = decide_replicas(4, [20.0] * 4, 1, 0, since_last_change_s=60, config=CFG)
    assert d.replicas == 4 and d.intent == "down"
    d = decide_replicas(4, [20.0] * 4, 1, 0, since_last_change_s=CFG.downscale_cooldown_s, config=CFG)
    assert d.replicas == 3


def test_cold_start_from_zero():
    assert decide_replicas(0, [], 5, 5, 0, CFG).replicas == 3
    assert decide_replicas(0, [], 0, 0, 0, CFG).replicas == 0


@pytest.mark.parametrize("kwargs", [
    {"target_utilization": 0}, {"target_utilization": 98, "tolerance": 5}, {"tolerance": -1},
    {"min_replicas": 3, "max_replicas": 2}, {"max_scale_up_step": 0}, {"target_ongoing_requests": 0},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        GPUPolicyConfig(**kwargs)


def test_unknown_policy_kwargs_rejected():
    with pytest.raises(ValueError, match="unknown policy_kwargs"):
        GPUUtilizationPolicy(target_util=60)


def test_gpu_stats_empty_on_cpu():
    assert gpu_autoscaling_stats("cpu") == {}
    stats = gpu_autoscaling_stats()
    import torch

    if not torch.cuda.is_available():
        assert stats == {}
    else:  # on a GPU machine with NVML: a percentage (or nothing when NVML is absent)
        assert set(stats) <= {GPU_UTILIZATION_METRIC}
        assert all(0 <= v <= 100 for v in stats.values())


# --- the adapter, through Ray Serve's own config parsing and policy wrapper ------------------

def _ray_policy(autoscaling: dict):
    from ray.serve._private.autoscaling_state import _resolve_policy_callable
    from ray.serve.autoscaling_policy import _apply_autoscaling_config
    from ray.serve.config import AutoscalingConfig

    config = AutoscalingConfig(**autoscaling)
    return config, _apply_autoscaling_config(_resolve_policy_callable(config.policy))


def _ctx(config, current, target, utils, ongoing, queued, state, now, min_r=0, max_r=8, last_up=None, last_down=None):
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve.config import AutoscalingContext

    dep = DeploymentID(name="DehazeFormer", app_name="dehaze")
    replicas = [ReplicaID(unique_id=f"r{i}", deployment_id=dep) for i in range(current)]
    metrics = {GPU_UTILIZATION_METRIC: dict(zip(replicas, utils))} if utils else {}
    return AutoscalingContext(
        deployment_id=dep, deployment_name=dep.name, app_name=dep.app_name,
        current_num_replicas=current, target_num_replicas=target, running_replicas=replicas,
        total_num_requests=ongoing, total_queued_requests=queued, aggregated_metrics=metrics,
        raw_metrics={}, capacity_adjusted_min_replicas=min_r, capacity_adjusted_max_replicas=max_r,
        policy_state=state, last_scale_up_time=last_up, last_scale_down_time=last_down, current_time=now,
        config=config,
    )


AUTOSCALING = {
    "min_replicas": 0, "max_replicas": 8, "target_ongoing_requests": 2,
    "upscale_delay_s": 0, "downscale_delay_s": 0,
    "policy": {"policy_function": "serve_app.autoscaling:GPUUtilizationPolicy",
               "policy_kwargs": {"target_utilization": 65, "tolerance": 5, "upscale_cooldown_s": 30,
                                 "downscale_cooldown_s": 120}},
}


def test_ray_parses_the_policy_config():
    config, _ = _ray_policy(AUTOSCALING)
    assert config.policy.policy_function == "serve_app.autoscaling:GPUUtilizationPolicy"
    assert not config.policy.is_default_policy_function()
    # the plain-function form works too
    from ray.serve.config import AutoscalingConfig

    fn = AutoscalingConfig(policy={"policy_function": "serve_app.autoscaling:gpu_utilization_policy"})
    assert callable(fn.policy.get_policy())


def test_adapter_through_ray_wrapper_tracks_state_and_cooldown():
    config, policy = _ray_policy(AUTOSCALING)
    state: dict = {}
    now = 1000.0
    # 2 replicas at 97 %: scale up to ceil(2 * 97 / 65) = 3
    n, state = policy(_ctx(config, 2, 2, [97.0, 97.0], 6, 1, state, now))
    assert n == 3
    # the new replica is still starting: the policy keeps the target (no downscale wish)
    n, state = policy(_ctx(config, 2, 3, [97.0, 97.0], 6, 1, state, now + 10))
    assert n == 3
    # started, still hot, but inside the upscale cool-down after the change
    n, state = policy(_ctx(config, 3, 3, [90.0] * 3, 6, 1, state, now + 20))
    assert n == 3 and "cool-down" in state["gpu_policy.reason"]
    n, state = policy(_ctx(config, 3, 3, [90.0] * 3, 6, 1, state, now + 45))
    assert n == 4  # ceil(3 * 90 / 70)
    # in band: hold
    n, state = policy(_ctx(config, 4, 4, [64.0] * 4, 6, 0, state, now + 100))
    assert n == 4
    # load gone: down one step once the downscale cool-down (from the change at +45) passed
    n, state = policy(_ctx(config, 4, 4, [10.0] * 4, 1, 0, state, now + 110))
    assert n == 4 and "cool-down" in state["gpu_policy.reason"]
    n, state = policy(_ctx(config, 4, 4, [10.0] * 4, 1, 0, state, now + 170))
    assert n == 3
    # Serve's own record of the last scale-down counts too
    n, state = policy(_ctx(config, 3, 3, [10.0] * 3, 1, 0, state, now + 400, last_down=now + 390))
    assert n == 3
    # Serve's own keys survive next to ours
    assert any(k.startswith("gpu_policy.") for k in state)


def test_adapter_without_gpu_metrics_uses_requests_and_bounds():
    config, policy = _ray_policy(AUTOSCALING)
    n, _ = policy(_ctx(config, 1, 1, [], 30, 20, {}, 0.0, max_r=4))
    assert n == 4
    # cold start from zero goes through Serve's fast path
    n, _ = policy(_ctx(config, 0, 0, [], 3, 3, {}, 0.0))
    assert n >= 1


class _Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        return self.now


@pytest.mark.parametrize("demand,settle", [(2.6, {4}), (3.3, {5}), (4.75, {7, 8}), (1.0, {2})])
def test_simulation_through_ray_wrapper_with_serve_delays(monkeypatch, demand, settle):
    """The policy as Serve runs it: Ray's wrapper (cold start, upscale_delay_s / downscale_delay_s
    timed by a fake clock, bounds), noisier readings (±4 % per replica), replicas starting in 30 s."""
    import ray.serve.autoscaling_policy as rap

    clock = _Clock()
    monkeypatch.setattr(rap, "time", clock)
    autoscaling = {**AUTOSCALING, "upscale_delay_s": 10, "downscale_delay_s": 300, "max_replicas": 10}
    config, policy = _ray_policy(autoscaling)
    sim = SimDeployment(CFG, replicas=1, seed=int(demand * 7), noise=4.0)
    state: dict = {}
    last_up = last_down = None
    for _ in range(int(120 * 60 / TICK_S)):
        utils, ongoing, queued = sim.observe(demand)
        ctx = _ctx(config, sim.replicas, sim.target, utils, ongoing, queued, state, clock.now,
                   min_r=0, max_r=10, last_up=last_up, last_down=last_down)
        n, state = policy(ctx)
        n = max(0, min(10, n))
        if n != sim.target:
            if n > sim.target:
                last_up = clock.now
                sim.pending += [sim.t + sim.startup_ticks * TICK_S] * (n - sim.target)
            else:
                last_down = clock.now
                drop = sim.target - n
                cancel = min(drop, len(sim.pending))
                sim.pending = sim.pending[: len(sim.pending) - cancel]
                sim.replicas -= drop - cancel
            sim.target = n
        sim.t += TICK_S
        clock.now += TICK_S
        started = [p for p in sim.pending if p <= sim.t]
        sim.pending = [p for p in sim.pending if p > sim.t]
        sim.replicas += len(started)
        sim.history.append((sim.t, sim.replicas, sim.target, sum(utils) / len(utils) if utils else None))
    seq = targets(sim)
    assert reversals(seq) == 0, seq
    assert set(targets(sim, since_s=60 * 60)) <= settle, seq[-10:]
