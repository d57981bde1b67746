"""The Grafana dashboard: generated (no drift), every panel query names a metric that we or Ray
export, and the ConfigMap carries the same JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import ray
from kuberay import grafana
from serve_app.metrics import METRIC_NAMES

RAY_SRC = Path(ray.__file__).parent


def _ray_exports(name: str) -> bool:
    """Ray's source defines the metric (a literal, or an f-string with the HTTP protocol)."""
    bare = name.removeprefix("ray_")
    for suffix in ("_bucket", "_sum", "_count"):
        bare = bare.removesuffix(suffix)
    candidates = {f'"{bare}"', f"\"{bare.replace('http', '{protocol_name}')}\""}
    for path in list((RAY_SRC / "serve").rglob("*.py")) + list((RAY_SRC / "_private").rglob("*.py")) + \
            list((RAY_SRC / "dashboard").rglob("*.py")):
        text = path.read_text(errors="ignore")
        if any(c in text or ("f" + c) in text for c in candidates):
            return True
    return False


def test_dashboard_files_are_generated():
    for path, text in grafana.rendered().items():
        assert path.read_text() == text, f"{path} is stale: run python -m kuberay.grafana"


def test_every_query_names_an_exported_metric():
    dashboard = json.loads((grafana.HERE / "dashboard.json").read_text())
    ours = {f"ray_{n}" for n in METRIC_NAMES}
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bray_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            used |= names
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert base in ours or _ray_exports(name), f"{name} is exported neither by us nor by Ray"
    # the dashboard covers the list: QPS, latency quantiles, errors, replicas, queue, GPU
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for word in ("requests per second", "p99", "errors", "replicas", "queue", "gpu", "cache", "haze"):
        assert word in titles, word


def test_configmap_holds_the_dashboard():
    cm = yaml.safe_load((grafana.HERE / "dashboard-configmap.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dehaze-serve.json"]) == grafana.build_dashboard()
    kustomization = yaml.safe_load((grafana.HERE.parent / "kustomization.yaml").read_text())
    assert "grafana/dashboard-configmap.yaml" in kustomization["resources"]
