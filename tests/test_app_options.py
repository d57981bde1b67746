"""configs/serve.yaml as Ray reads it, and the per-deployment options build_app derives from it
for each profile (no Ray cluster needed: these are the pure functions build_app calls)."""
from __future__ import annotations

import importlib

import pytest
import yaml

from algorithms.registry import load_registry
from serve_app.app import AppArgs, CPUProfile, _threads_for, deployment_options, read_serve_config
from tests.conftest import REPO

SERVE_YAML = REPO / "configs" / "serve.yaml"


@pytest.fixture(scope="module")
def serve_config():
    args, file_options = read_serve_config(SERVE_YAML)
    return AppArgs.model_validate(args), file_options


def test_serve_yaml_is_a_valid_ray_serve_config_for_serve_run():
    """`serve run configs/serve.yaml` parses the file with Ray's own schema and imports the builder."""
    from ray.serve.schema import ServeDeploySchema

    cfg = yaml.safe_load(SERVE_YAML.read_text())
    schema = ServeDeploySchema.model_validate(cfg)
    (app,) = schema.applications
    module, attr = app.import_path.split(":")
    assert getattr(importlib.import_module(module), attr).__name__ == "build_app"
    AppArgs.model_validate(app.args)
    # every deployment the file configures is the ingress or a registry algorithm
    names = {e.name for e in load_registry(REPO / "configs" / "models.yaml").algorithms}
    assert {d.name for d in app.deployments} <= names | {"Ingress"}


def test_gpu_profile_uses_the_file_as_written(serve_config):
    args, file_options = serve_config
    net = deployment_options("DehazeFormer", args, file_options, "gpu")
    assert net["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.25}
    assert net["autoscaling_config"]["min_replicas"] == 0 and net["autoscaling_config"]["max_replicas"] == 4
    assert net["autoscaling_config"]["policy"]["policy_function"] == "serve_app.autoscaling:GPUUtilizationPolicy"
    assert net["user_config"]["max_batch_size"] == 4
    # a deployment entry overrides the defaults key by key (deep merge)
    dcp = deployment_options("DCP", args, file_options, "gpu")
    assert dcp["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0}
    auto = dcp["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (1, 8, 1)
    assert auto["downscale_delay_s"] == 300  # inherited from the defaults
    assert _threads_for(net, args, "gpu") == 1


def test_cpu_profile_drops_gpus_and_scales_from_small_requests(serve_config):
    args, file_options = serve_config
    for name in ("DehazeFormer", "WPXNet", "DCP"):
        opts = deployment_options(name, args, file_options, "cpu")
        assert opts["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0}
        auto = opts["autoscaling_config"]
        assert auto["min_replicas"] <= 1 and 1 <= auto["max_replicas"] <= 2
        assert auto.get("initial_replicas", 0) <= max(auto["min_replicas"], 0)
        assert _threads_for(opts, args, "cpu") == args.cpu_profile.threads == 1
    # networks still scale from zero, the classical priors stay warm
    assert deployment_options("DehazeFormer", args, file_options, "cpu")["autoscaling_config"]["min_replicas"] == 0
    assert deployment_options("DCP", args, file_options, "cpu")["autoscaling_config"]["min_replicas"] == 1


def test_overrides_apply_last_and_the_cpu_profile_is_an_argument(serve_config):
    args, file_options = serve_config
    args = args.model_copy(update={
        "overrides": {"DCP": {"max_queued_requests": 1, "autoscaling_config": {"max_replicas": 3}}},
        "cpu_profile": CPUProfile(num_cpus=0.5, threads=2, max_min_replicas=0),
    })
    gpu = deployment_options("DCP", args, file_options, "gpu")
    assert gpu["max_queued_requests"] == 1 and gpu["autoscaling_config"]["max_replicas"] == 3
    assert gpu["autoscaling_config"]["min_replicas"] == 1
    cpu = deployment_options("DCP", args, file_options, "cpu")
    assert cpu["ray_actor_options"]["num_cpus"] == 0.5 and cpu["autoscaling_config"]["min_replicas"] == 0
    assert _threads_for(cpu, args, "cpu") == 2


def test_bad_app_args_fail_with_the_field_named():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="profile"):
        AppArgs.model_validate({"profile": "tpu"})
    with pytest.raises(ValidationError, match="num_cpus"):
        AppArgs.model_validate({"cpu_profile": {"num_cpus": 0}})
    with pytest.raises(ValidationError, match="unknown_key"):
        AppArgs.model_validate({"unknown_key": 1})
