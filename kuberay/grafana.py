"""The Grafana dashboard: our metrics (serve_app/metrics.py) and Ray Serve's built-ins.

    python -m kuberay.grafana           # writes kuberay/grafana/dashboard.json and the ConfigMap
    python -m kuberay.grafana --check   # exit 1 when the files differ from what this builds

Every PromQL expression names metrics through the ``M`` table below, so tests can check each
one is exported by us or by Ray. Names are the exported series: Ray prefixes every name with
``ray_``, and the Prometheus exposition adds ``_total`` to a Counter (unless its name already ends
in it) and ``_bucket`` / ``_sum`` / ``_count`` to a Histogram; a Gauge keeps its name.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "grafana"

#: requests that can hit the result cache (routes that dehaze)
DEHAZING = 'route=~"dehaze|legacy_prediction"'

#: metric families used by the panels (exported names, Ray's ``ray_`` prefix included)
M = {
    # ours
    "requests": "ray_dehaze_requests_total",
    "errors": "ray_dehaze_errors_total",
    "cache_hits": "ray_dehaze_cache_hits_total",
    "stage_ms": "ray_dehaze_stage_latency_ms_bucket",
    "megapixels": "ray_dehaze_input_megapixels_bucket",
    "haze_sum": "ray_dehaze_haze_score_sum",
    "haze_count": "ray_dehaze_haze_score_count",
    "load_s": "ray_dehaze_model_load_seconds_bucket",
    "gpu_mem": "ray_dehaze_gpu_memory_bytes",
    "gpu_util": "ray_dehaze_gpu_utilization",
    "batch_sum": "ray_dehaze_batch_size_sum",
    "batch_count": "ray_dehaze_batch_size_count",
    # Ray Serve and Ray built-ins
    "http_requests": "ray_serve_num_http_requests_total",
    "http_errors": "ray_serve_num_http_error_requests_total",
    "http_latency": "ray_serve_http_request_latency_ms_bucket",
    "replica_healthy": "ray_serve_deployment_replica_healthy",
    "queued": "ray_serve_deployment_queued_queries",
    "processing": "ray_serve_replica_processing_queries",
    "node_gpu": "ray_node_gpus_utilization",
    "node_gram": "ray_node_gram_used",
}


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, unit: str = "short",
           w: int = 12, h: int = 8) -> dict:
    return {
        "id": pid, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend} for i, (e, legend) in enumerate(exprs)],
    }


def build_dashboard() -> dict:
    q = lambda name, p, by: (  # noqa: E731 - latency quantile over a histogram family
        f"histogram_quantile({p}, sum(rate({name}[5m])) by (le, {by}))")
    panels = [
        _panel(1, "Requests per second by model and route", [
            (f"sum(rate({M['requests']}[1m])) by (model, route)", "{{model}} {{route}}")], 0, 0, "reqps"),
        _panel(2, "HTTP QPS and errors (Ray Serve proxy)", [
            (f"sum(rate({M['http_requests']}[1m]))", "requests"),
            (f"sum(rate({M['http_errors']}[1m])) by (error_code)", "errors {{error_code}}")], 12, 0, "reqps"),
        _panel(3, "End-to-end latency p50 / p95 / p99 (ms)", [
            (q(M["http_latency"], 0.5, "application"), "p50"), (q(M["http_latency"], 0.95, "application"), "p95"),
            (q(M["http_latency"], 0.99, "application"), "p99")], 0, 8, "ms"),
        _panel(4, "Inference latency p95 by model (ms)", [
            (f'histogram_quantile(0.95, sum(rate({M["stage_ms"]}{{stage="inference"}}[5m])) by (le, model))',
             "{{model}}")], 12, 8, "ms"),
        _panel(5, "Latency by stage, p95 (ms)", [
            (f"histogram_quantile(0.95, sum(rate({M['stage_ms']}[5m])) by (le, stage))", "{{stage}}")], 0, 16, "ms"),
        _panel(6, "Errors by status code", [
            (f"sum(rate({M['errors']}[5m])) by (code, route)", "{{code}} {{route}}")], 12, 16, "reqps"),
        _panel(7, "Result cache hit ratio", [
            (f"sum(rate({M['cache_hits']}[5m])) / clamp_min(sum(rate({M['requests']}{{{DEHAZING}}}[5m])), 1e-9)",
             "hit ratio")], 0, 24, "percentunit"),
        _panel(8, "Healthy replicas per deployment", [
            (f"sum({M['replica_healthy']}) by (deployment)", "{{deployment}}")], 12, 24),
        _panel(9, "Queue length per deployment", [
            (f"sum({M['queued']}) by (deployment)", "queued {{deployment}}"),
            (f"sum({M['processing']}) by (deployment)", "processing {{deployment}}")], 0, 32),
        _panel(10, "Input size p50 / p95 (megapixels)", [
            (f"histogram_quantile(0.5, sum(rate({M['megapixels']}[5m])) by (le))", "p50"),
            (f"histogram_quantile(0.95, sum(rate({M['megapixels']}[5m])) by (le))", "p95")], 12, 32),
        _panel(11, "Haze score before / after (mean dark channel)", [
            (f"sum(rate({M['haze_sum']}[5m])) by (side) / clamp_min(sum(rate({M['haze_count']}[5m])) by (side), 1e-9)",
             "{{side}}")], 0, 40),
        _panel(12, "Model load time p95 (s)", [
            (f"histogram_quantile(0.95, sum(rate({M['load_s']}[30m])) by (le, model))", "{{model}}")], 12, 40, "s"),
        # the replica gauges carry the variant run last (older variants' series read 0): one value
        # per replica first, then across replicas
        _panel(13, "GPU utilisation (%)", [
            (f"avg(max({M['gpu_util']}) by (model, replica)) by (model)", "replicas of {{model}}"),
            (f"avg({M['node_gpu']}) by (instance)", "node {{instance}}")], 0, 48, "percent"),
        _panel(14, "GPU memory", [
            (f"sum(max({M['gpu_mem']}) by (model, replica)) by (model)", "allocated by {{model}}"),
            (f"sum({M['node_gram']}) by (instance)", "used on {{instance}} (MB)")], 12, 48, "bytes"),
        _panel(15, "Mean dynamic batch size (images per forward)", [
            (f"sum(rate({M['batch_sum']}[5m])) by (model) / clamp_min(sum(rate({M['batch_count']}[5m])) by (model), 1e-9)",
             "{{model}}")], 0, 56),
    ]
    return {
        "uid": "dehaze-serve", "title": "Dehaze Serve", "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "tags": ["dehaze", "ray-serve"],
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def build_configmap(dashboard_json: str) -> str:
    body = "\n".join("    " + line for line in dashboard_json.splitlines())
    return (
        "# Generated by `python -m kuberay.grafana` from kuberay/grafana.py: do not edit.\n"
        "# Grafana's dashboard sidecar picks up ConfigMaps labelled grafana_dashboard=\"1\".\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dehaze-grafana-dashboard\n"
        "  labels:\n    grafana_dashboard: \"1\"\n    app.kubernetes.io/name: dehaze-serve\n"
        f"data:\n  dehaze-serve.json: |\n{body}\n"
    )


def rendered() -> dict[Path, str]:
    text = json.dumps(build_dashboard(), indent=2) + "\n"
    return {HERE / "dashboard.json": text, HERE / "dashboard-configmap.yaml": build_configmap(text)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = [p for p, text in rendered().items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p} is out of date: run python -m kuberay.grafana")
        sys.exit(1 if stale else 0)
    HERE.mkdir(exist_ok=True)
    for p, text in rendered().items():
        p.write_text(text)
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
