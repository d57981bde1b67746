"""Application builder: ``build_app(args) -> serve.Application``.

Graph: HTTP -> Serve proxy -> Ingress (FastAPI) -> one ModelServer deployment per registry
entry, named after it. Per-deployment options (ray_actor_options with fractional GPUs,
autoscaling_config, max_ongoing_requests, max_queued_requests) come from configs/serve.yaml:
``args.defaults`` for every algorithm, overridden by the entry of the same name in the
application's ``deployments`` list (the same list Ray applies itself under ``serve run``).

Profiles: ``gpu`` uses the file as written. ``cpu`` serves the same graph on a machine without
GPUs: num_gpus becomes 0, every replica asks for ``cpu_profile.num_cpus`` logical CPUs, and
``min_replicas`` is capped by ``cpu_profile.max_min_replicas`` (networks scale from zero on
first use). ``auto`` (the default) picks ``gpu`` when the Ray cluster has GPUs, else ``cpu``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from algorithms.registry import load_registry
from serve_app.ingress import Ingress
from serve_app.model_server import ModelServer
from serve_app.settings import settings_with


class CPUProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_cpus: float = Field(0.25, gt=0, description="logical CPUs requested by each replica")
    threads: int = Field(1, ge=1, description="torch/OpenCV threads per replica")
    max_min_replicas: int = Field(1, ge=0, description="cap on autoscaling min_replicas")


class AppArgs(BaseModel):
    """Arguments of build_app (the ``args`` of the application in configs/serve.yaml)."""

    model_config = ConfigDict(extra="forbid")
    registry_path: str | None = None
    serve_config_path: str | None = None
    profile: Literal["auto", "gpu", "cpu"] | None = None
    #: deploy only these algorithms (default: every registry entry)
    models: list[str] | None = None
    #: options for every algorithm deployment unless its own entry overrides them
    defaults: dict[str, Any] = Field(default_factory=dict)
    cpu_profile: CPUProfile = Field(default_factory=CPUProfile)
    #: extra per-deployment overrides (applied last; handy in tests)
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Settings fields replaced for this application's replicas (e.g. another storage backend)
    settings: dict[str, Any] = Field(default_factory=dict)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_serve_config(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(application args, per-deployment options by name) of the first application."""
    doc = yaml.safe_load(Path(path).read_text())
    app = (doc.get("applications") or [{}])[0]
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
    return app.get("args", {}) or {}, deployments


def cluster_has_gpus() -> bool:
    import ray

    try:
        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    except Exception:  # noqa: BLE001 - no cluster yet: treat as CPU-only
        return False


def to_cpu_profile(options: dict[str, Any], profile: CPUProfile) -> dict[str, Any]:
    opts = copy.deepcopy(options)
    actor = opts.setdefault("ray_actor_options", {})
    actor["num_gpus"] = 0
    actor["num_cpus"] = profile.num_cpus
    auto = opts.get("autoscaling_config")
    if auto:
        auto["min_replicas"] = min(auto.get("min_replicas", 1), profile.max_min_replicas)
        if "initial_replicas" in auto:
            auto["initial_replicas"] = min(auto["initial_replicas"], max(auto["min_replicas"], 0))
        auto["max_replicas"] = max(1, min(auto.get("max_replicas", 1), 2))
    return opts


def deployment_options(name: str, args: AppArgs, file_options: dict[str, dict], profile: str) -> dict[str, Any]:
    opts = _deep_merge(args.defaults, file_options.get(name, {}))
    opts = _deep_merge(opts, args.overrides.get(name, {}))
    if profile == "cpu":
        opts = to_cpu_profile(opts, args.cpu_profile)
    return opts


def _threads_for(options: dict[str, Any], args: AppArgs, profile: str) -> int:
    if profile == "cpu":
        return args.cpu_profile.threads
    return max(1, int(options.get("ray_actor_options", {}).get("num_cpus", 1)))


def build_app(raw_args: dict[str, Any] | None = None) -> serve.Application:
    raw_args = dict(raw_args or {})
    settings = settings_with(raw_args.get("settings"))
    config_path = raw_args.get("serve_config_path") or settings.serve_config_path
    file_args, file_options = read_serve_config(config_path) if Path(config_path).exists() else ({}, {})
    args = AppArgs.model_validate(_deep_merge(file_args, raw_args))
    profile = args.profile or settings.profile
    if profile == "auto":
        profile = "gpu" if cluster_has_gpus() else "cpu"

    registry = load_registry(args.registry_path or settings.registry_path)
    wanted = args.models or [e.name for e in registry.algorithms]
    handles = {}
    for name in wanted:
        entry = registry.get(name)
        opts = deployment_options(entry.name, args, file_options, profile)
        threads = _threads_for(opts, args, profile)
        deployment = serve.deployment(ModelServer).options(name=entry.name, **opts)
        handles[entry.name] = deployment.bind(entry.name, threads, args.registry_path, args.settings or None)
    ingress_opts = _deep_merge(file_options.get("Ingress", {}), args.overrides.get("Ingress", {}))
    if profile == "cpu":
        ingress_opts = to_cpu_profile(ingress_opts, args.cpu_profile)
    return Ingress.options(**ingress_opts).bind(handles, args.registry_path, args.settings or None)
