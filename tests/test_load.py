"""A short run of benchmarks/load.py (a second process on loopback) against a deployed app:
no unexpected errors at concurrency 1 and 8, and sane latency statistics."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, deploy


@pytest.mark.slow
def test_short_load_run_has_no_errors(ray_serve, tmp_path):
    from ray import serve

    deploy({"profile": "cpu", "models": ["DCP"], "settings": {"storage_dir": str(tmp_path / "store")},
            "overrides": {"Ingress": {"num_replicas": 1}}}, "load", "/load")
    try:
        out = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "load.py"), "--url", f"{ray_serve.url}/load", "--app", "load",
             "-n", "24", "--concurrency", "1,8", "--deadline", "120", "--json"],
            capture_output=True, text=True, timeout=400, check=True)
    finally:
        serve.delete("load")
    report = json.loads(out.stdout)
    for level in report["levels"]:
        assert level["requests"] == 24, level
        assert level["statuses"] == {"200": 24}, level
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]
    assert report["rss_before"].get("Ingress") and report["rss_after"].get("DCP")
