"""kuberay/: the RayService validates against KubeRay's CRD schema, its serveConfigV2 is what the
generator makes of configs/serve.yaml (drift test) and what Ray Serve accepts, and the other
manifests (MinIO, secrets, PodMonitor, kustomization) carry their required fields and agree with
each other (names, ports, keys, labels)."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import yaml

from kuberay import generate

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "kuberay"


def load_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def one(kind: str, name: str | None = None) -> dict:
    found = [d for f in sorted(KUBERAY.glob("*.yaml")) if f.name != "kustomization.yaml"
             for d in load_docs(f.name) if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def rayservice() -> dict:
    return one("RayService")


def pod_templates(rs: dict) -> dict[str, dict]:
    cluster = rs["spec"]["rayClusterConfig"]
    out = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        out[group["groupName"]] = group["template"]
    return out


def containers(rs: dict) -> dict[str, dict]:
    return {group: t["spec"]["containers"][0] for group, t in pod_templates(rs).items()}


# --- schema ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crd_schema(shared_dir) -> dict:
    crd = yaml.safe_load((shared_dir / "schemas" / "kuberay" / "ray.io_rayservices.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(obj, schema, path="") -> list[str]:
    """Fields the API server would reject with strict field validation (not in `properties`)."""
    out = []
    if isinstance(obj, dict) and isinstance(schema, dict):
        props = schema.get("properties")
        if props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for k, v in obj.items():
                if k not in props:
                    out.append(f"{path}.{k}")
                else:
                    out += unknown_fields(v, props[k], f"{path}.{k}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in obj.items():
                out += unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")
    elif isinstance(obj, list) and isinstance(schema, dict) and "items" in schema:
        for i, v in enumerate(obj):
            out += unknown_fields(v, schema["items"], f"{path}[{i}]")
    return out


def test_rayservice_validates_against_kuberay_crd(rayservice, crd_schema):
    import jsonschema

    validator = jsonschema.Draft7Validator(crd_schema)
    errors = sorted(validator.iter_errors(rayservice), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:20])
    assert rayservice["apiVersion"] == "ray.io/v1" and rayservice["kind"] == "RayService"
    assert unknown_fields(rayservice, crd_schema) == []


def test_schema_check_catches_mistakes(rayservice, crd_schema):
    import copy

    import jsonschema

    bad = copy.deepcopy(rayservice)
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    bad["spec"]["rayClusterConfig"]["autoscalerOptions"]["upscalingMode"] = "Turbo"
    bad["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True  # wrong case
    assert list(jsonschema.Draft7Validator(crd_schema).iter_errors(bad))
    assert unknown_fields(bad, crd_schema) == [".spec.rayClusterConfig.enableInTreeAutoScaling"]


# --- serveConfigV2: generated, in sync, valid for Ray Serve and our app ------------------------

def test_serve_config_v2_matches_generator(rayservice):
    expected = generate.render_serve_config(REPO / "configs" / "serve.yaml")
    assert rayservice["spec"]["serveConfigV2"] == expected, (
        "kuberay/rayservice.yaml drifted from configs/serve.yaml: run `python -m kuberay.generate`")
    assert generate.main(["--check"]) == 0


def test_generator_detects_drift_and_rewrites_only_the_block(tmp_path):
    manifest = tmp_path / "rayservice.yaml"
    original = (KUBERAY / "rayservice.yaml").read_text()
    manifest.write_text(original)
    serve_cfg = tmp_path / "serve.yaml"
    doc = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    doc["applications"][0]["args"]["defaults"]["max_ongoing_requests"] = 7
    serve_cfg.write_text(yaml.safe_dump(doc))
    assert generate.main(["--check", "--manifest", str(manifest), "--serve-config", str(serve_cfg)]) == 1
    assert generate.main(["--manifest", str(manifest), "--serve-config", str(serve_cfg)]) == 0
    assert generate.main(["--check", "--manifest", str(manifest), "--serve-config", str(serve_cfg)]) == 0
    updated = manifest.read_text()
    cfg = yaml.safe_load(generate.embedded_serve_config(manifest))
    assert cfg["applications"][0]["args"]["defaults"]["max_ongoing_requests"] == 7
    # everything outside the block (comments included) is untouched
    before, after = original.split("serveConfigV2: |")
    new_before, new_after = updated.split("serveConfigV2: |")
    assert before == new_before
    assert after[after.index("  rayClusterConfig:"):] == new_after[new_after.index("  rayClusterConfig:"):]


def test_serve_config_v2_overrides_for_kubernetes(rayservice):
    cfg = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    source = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    assert cfg["http_options"] == {**source.get("http_options", {}), "host": "0.0.0.0", "port": 8000}
    for app in cfg["applications"]:
        # GPU workers scale from zero: `auto` would see no GPUs at build time
        assert app["args"]["profile"] == "gpu"
    # nothing else differs from configs/serve.yaml
    for app in source["applications"]:
        app.setdefault("args", {})["profile"] = "gpu"
    source["http_options"] = cfg["http_options"]
    assert cfg == source


def test_serve_config_v2_is_accepted_by_ray_serve_and_the_app(rayservice):
    from ray.serve.schema import ServeDeploySchema

    from serve_app.app import AppArgs

    cfg = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(cfg)
    assert [a.import_path for a in schema.applications] == ["serve_app.app:build_app"]
    for app in cfg["applications"]:
        AppArgs.model_validate(app["args"])


# --- the Ray cluster -------------------------------------------------------------------------

def test_ray_version_matches_installed_ray(rayservice):
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == importlib.metadata.version("ray")


def test_cluster_groups_and_autoscaling(rayservice):
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    opts = cluster["autoscalerOptions"]
    assert opts["upscalingMode"] in {"Default", "Aggressive", "Conservative"}
    assert opts["idleTimeoutSeconds"] > 0 and opts["resources"]["limits"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"]
    cpu = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in cpu.get("limits", {})
    gpu_spec = groups["gpu"]["template"]["spec"]
    limits = gpu_spec["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in gpu_spec["tolerations"])
    assert groups["gpu"]["minReplicas"] == 0  # GPUs scale from zero
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_containers_share_image_env_and_mounts(rayservice):
    cs = containers(rayservice)
    images = {c["image"] for c in cs.values()}
    assert len(images) == 1
    image = images.pop()
    tag = image.rsplit(":", 1)[-1]
    assert "@sha256:" in image or (":" in image and tag not in {"latest", ""}), image
    envs = {g: sorted(yaml.safe_dump(e) for e in c["env"]) for g, c in cs.items()}
    assert len({tuple(v) for v in envs.values()}) == 1, "env differs between head and worker groups"
    mounts = {g: sorted((m["name"], m["mountPath"]) for m in c["volumeMounts"]) for g, c in cs.items()}
    assert len({tuple(v) for v in mounts.values()}) == 1
    for group, tpl in pod_templates(rayservice).items():
        sc = tpl["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, group
        assert {p["name"]: p["containerPort"] for p in cs[group]["ports"]}["metrics"] == 8080


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_storage_env_wired_to_minio_secret_and_service(rayservice):
    secret = one("Secret", "dehaze-minio")
    service = one("Service", "dehaze-minio")
    sts = one("StatefulSet", "dehaze-minio")
    for group, c in containers(rayservice).items():
        env = env_of(c)
        assert env["DEHAZE_STORAGE_BACKEND"]["value"] == "s3"
        host, port = env["DEHAZE_S3_ENDPOINT"]["value"].split(":")
        assert host == service["metadata"]["name"]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        for var in ("DEHAZE_S3_ACCESS_KEY", "DEHAZE_S3_SECRET_KEY"):
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert "value" not in env[var], f"{var} must come from the Secret"
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert env["DEHAZE_WEIGHTS_ROOT"]["value"].startswith("s3://")
    # MinIO reads the same Secret
    minio = sts["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "dehaze-minio"}} in minio["envFrom"]
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= set(secret["stringData"])


def test_auth_on_with_tokens_file_from_secret(rayservice):
    secret = one("Secret", "dehaze-auth")
    for group, tpl in pod_templates(rayservice).items():
        c = tpl["spec"]["containers"][0]
        path = env_of(c)["DEHAZE_AUTH_TOKENS_FILE"]["value"]
        mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
        assert mount.get("readOnly") is True
        # the kubelet never refreshes a subPath mount: rotating the Secret (docs/deploy.md) needs
        # the directory mount, whose file the ingress re-reads when it changes
        assert "subPath" not in mount and "subPathExpr" not in mount, group
        volume = next(v for v in tpl["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        rel = path[len(mount["mountPath"].rstrip("/")) + 1:]
        items = volume["secret"].get("items")
        assert (rel in {i["path"] for i in items}) if items else (rel in secret["stringData"])
        assert all(i["key"] in secret["stringData"] for i in items or [])
    assert secret["stringData"]["tokens"].strip()


# --- MinIO, PodMonitor, kustomization --------------------------------------------------------

def test_minio_statefulset_and_service():
    service = one("Service", "dehaze-minio")
    sts = one("StatefulSet", "dehaze-minio")
    spec = sts["spec"]
    assert sts["apiVersion"] == "apps/v1"
    assert spec["serviceName"] == service["metadata"]["name"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    c = spec["template"]["spec"]["containers"][0]
    image = c["image"]
    assert ":" in image and not image.endswith(":latest")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["api"] == 9000
    for p in service["spec"]["ports"]:
        assert p["targetPort"] in ports or p["targetPort"] in ports.values()
    assert c["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    mounts = {m["name"] for m in c["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    assert mounts <= claims
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_podmonitor_selects_ray_pods_and_ports(rayservice):
    pm = one("PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    selector = pm["spec"]["selector"]["matchLabels"]
    templates = pod_templates(rayservice)
    for group, tpl in templates.items():
        assert selector.items() <= tpl["metadata"]["labels"].items(), group
    port_names = {p["name"] for c in containers(rayservice).values() for p in c["ports"]}
    endpoints = pm["spec"]["podMetricsEndpoints"]
    assert endpoints and all(e["port"] in port_names for e in endpoints)
    assert any(e["port"] == "metrics" for e in endpoints)


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    manifests = {f.name for f in KUBERAY.glob("*.yaml") if f.name != "kustomization.yaml"}
    assert manifests <= listed
    assert all((KUBERAY / r).exists() for r in listed)


def test_every_manifest_has_required_fields():
    for f in sorted(KUBERAY.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in load_docs(f.name):
            assert d.get("apiVersion") and d.get("kind"), f.name
            assert d.get("metadata", {}).get("name"), f.name
            if d["kind"] == "Secret":
                assert d.get("stringData") or d.get("data"), f.name
