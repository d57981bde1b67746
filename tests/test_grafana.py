"""The Grafana dashboard: generated (no drift), every panel query names a series that we or Ray
actually export, and the ConfigMap carries the same JSON.

"Actually export" applies Prometheus' naming to the metric definitions found in the source (ours
in serve_app/metrics.py, Ray's in its installed package): Ray prefixes ``ray_``; a Counter is
exposed as ``<name>_total`` (a name already ending in ``_total`` is kept), a Histogram as
``<name>_bucket`` / ``_sum`` / ``_count``, a Gauge as ``<name>``. tests/test_ops.py checks the
same names against a live scrape of a Ray cluster."""
from __future__ import annotations

import ast
import json
import re
from functools import lru_cache
from pathlib import Path

import yaml

import ray
from kuberay import grafana
from serve_app.metrics import METRIC_NAMES

RAY_SRC = Path(ray.__file__).parent
REPO = Path(__file__).resolve().parents[1]
KINDS = ("Counter", "Gauge", "Histogram")


def _name_pattern(node: ast.AST) -> str | None:
    """A regex for a metric name given as a literal or an f-string (f"serve_num_{protocol}_requests")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value) if re.fullmatch(r"[a-z][a-z0-9_]*", node.value) else None
    if isinstance(node, ast.JoinedStr):
        parts = [re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z0-9_]+" for v in node.values]
        return "".join(parts)
    return None


def metric_definitions(paths) -> list[tuple[str, str]]:
    """(kind, name regex) of every Counter/Gauge/Histogram(...) call with a literal name."""
    found = []
    for path in paths:
        text = path.read_text(errors="ignore")
        if not any(f"{k}(" in text for k in KINDS):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            kind = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if kind not in KINDS:
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            pattern = _name_pattern(arg) if arg is not None else None
            if pattern:
                found.append((kind, pattern))
    return found


def exposed(kind: str, pattern: str) -> list[str]:
    """Prometheus series names (regexes) of a Ray metric definition."""
    base = "ray_" + pattern
    if kind == "Counter":
        return [base if pattern.endswith("_total") else base + "_total"]
    if kind == "Histogram":
        return [base + s for s in ("_bucket", "_sum", "_count")]
    return [base]


@lru_cache(maxsize=None)
def _series(which: str) -> tuple[re.Pattern, ...]:
    if which == "ours":
        paths = [REPO / "serve_app" / "metrics.py"]
    else:
        paths = [p for sub in ("serve", "_private", "dashboard") for p in (RAY_SRC / sub).rglob("*.py")
                 if "/tests/" not in p.as_posix()]
    return tuple(re.compile(s) for kind, pat in metric_definitions(paths) for s in exposed(kind, pat))


def exported_by(name: str) -> str | None:
    for which in ("ours", "ray"):
        if any(rx.fullmatch(name) for rx in _series(which)):
            return which
    return None


def test_the_naming_rule_matches_what_ray_exposes():
    """The rule itself: Ray 2.60 scrapes show Counters with _total, Histograms with _bucket."""
    assert exported_by("ray_serve_num_http_requests_total") == "ray"
    assert exported_by("ray_serve_num_http_requests") is None  # the old, wrong dashboard name
    assert exported_by("ray_serve_num_http_error_requests_total") == "ray"
    assert exported_by("ray_serve_http_request_latency_ms_bucket") == "ray"
    assert exported_by("ray_serve_http_request_latency_ms") is None
    assert exported_by("ray_serve_deployment_replica_healthy") == "ray"  # a Gauge keeps its name
    assert exported_by("ray_dehaze_requests_total") == "ours"  # already ends in _total
    assert exported_by("ray_dehaze_requests_total_total") is None
    assert exported_by("ray_dehaze_stage_latency_ms_bucket") == "ours"
    # every metric we list is defined in serve_app/metrics.py
    defined = {re.sub(r"\\", "", pat) for _, pat in metric_definitions([REPO / "serve_app" / "metrics.py"])}
    assert set(METRIC_NAMES) <= defined, set(METRIC_NAMES) - defined


def test_dashboard_files_are_generated():
    for path, text in grafana.rendered().items():
        assert path.read_text() == text, f"{path} is stale: run python -m kuberay.grafana"


def test_every_query_names_an_exported_metric():
    dashboard = json.loads((grafana.HERE / "dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bray_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            used |= names
    missing = sorted(n for n in used if exported_by(n) is None)
    assert not missing, f"exported neither by us nor by Ray (under Prometheus' names): {missing}"
    assert set(grafana.M.values()) == used
    # the dashboard covers the list: QPS, latency quantiles, errors, replicas, queue, GPU
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for word in ("requests per second", "p99", "errors", "replicas", "queue", "gpu", "cache", "haze"):
        assert word in titles, word


def test_deploy_docs_name_exported_metrics():
    doc = (REPO / "docs" / "deploy.md").read_text()
    section = doc[doc.index("## Prometheus and Grafana"):]
    names = set(re.findall(r"\bray_[a-z_]+", section))
    assert names, "docs/deploy.md names no metric"
    missing = sorted(n for n in names if exported_by(n) is None)
    assert not missing, f"docs/deploy.md names series nobody exports: {missing}"


def test_configmap_holds_the_dashboard():
    cm = yaml.safe_load((grafana.HERE / "dashboard-configmap.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dehaze-serve.json"]) == grafana.build_dashboard()
    kustomization = yaml.safe_load((grafana.HERE.parent / "kustomization.yaml").read_text())
    assert "grafana/dashboard-configmap.yaml" in kustomization["resources"]
