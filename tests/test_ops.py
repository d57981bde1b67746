"""Production operations on a real local Ray cluster: Prometheus metrics, rate limits (in memory
and shared through a real Redis server, clients told apart by the address our proxy appended to
X-Forwarded-For), bearer-token auth and its rotation through the tokens file, backpressure of a
saturated model, the per-replica LRU of loaded variants."""
from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from kuberay import grafana
from serve_app.metrics import CONDITIONAL_METRICS, METRIC_NAMES
from tests.conftest import deploy, free_port, replica_names

SLOW_MODEL = '''
import time
from algorithms.base import Dehazer

class SlowEcho(Dehazer):
    """Test double for load: sleeps, then returns the input."""
    def __init__(self, seconds):
        self.seconds = seconds
    def dehaze(self, image):
        time.sleep(self.seconds)
        return image.copy()

def factory(req):
    return SlowEcho(float(req.params.get("seconds", 1.0)))
'''

FLAKY_MODEL = '''
import os
from algorithms.base import Dehazer

class Flaky(Dehazer):
    """Test double for health checks: fails while a marker file exists."""
    def __init__(self, marker):
        self.marker = marker
    def dehaze(self, image):
        if os.path.exists(self.marker):
            raise RuntimeError("broken on purpose")
        return image.copy()

def factory(req):
    return Flaky(req.params["marker"])
'''

ECHO_MODEL = '''
from algorithms.base import Dehazer

class Echo(Dehazer):
    """Test double for the variant LRU: returns the input; every load is logged."""
    def dehaze(self, image):
        return image.copy()

def factory(req):
    with open(req.params["log"], "a") as fh:
        fh.write(req.variant + "\\n")
    return Echo()
'''

REGISTRY = """
- {name: DCP, type: prior, description: dark channel prior, importPath: algorithms.dcp}
- {name: Slow, type: test, description: sleeps then echoes, importPath: slow_model, params: {seconds: 1.5}}
- {name: Flaky, type: test, description: fails while a marker exists, importPath: flaky_model, params: {marker: MARKER}}
- name: Echo
  type: test
  description: echoes, logs each load
  importPath: echo_model
  params: {log: LOADLOG}
  children:
    - {name: a, type: t, description: variant a}
    - {name: b, type: t, description: variant b}
"""


def _png(w=32, h=32, seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def ops_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    (root / "models.yaml").write_text(REGISTRY.replace("MARKER", str(root / "broken.marker"))
                                      .replace("LOADLOG", str(root / "loads.log")))
    (root / "slow_model.py").write_text(SLOW_MODEL)
    (root / "flaky_model.py").write_text(FLAKY_MODEL)
    (root / "echo_model.py").write_text(ECHO_MODEL)
    return root


def _app(ops_root, tmp_path, models, settings=None, overrides=None):
    return {"registry_path": str(ops_root / "models.yaml"), "profile": "cpu", "models": models,
            "settings": {"storage_dir": str(tmp_path / "store"), **(settings or {})},
            "overrides": {"Ingress": {"num_replicas": 1}, **(overrides or {})}}


@pytest.fixture()
def app_factory(ray_serve, ops_root, tmp_path):
    from ray import serve

    names = []

    def make(name, models, settings=None, overrides=None):
        deploy(_app(ops_root, tmp_path, models, settings, overrides), name, f"/{name}")
        names.append(name)
        return httpx.Client(base_url=f"{ray_serve.url}/{name}", timeout=120)

    yield make
    for n in names:
        serve.delete(n)


def _via_proxy(client_addr: str, spoofed: str) -> dict[str, str]:
    """Headers as our proxy forwards them: the client's own X-Forwarded-For value (anything it
    likes), then the address the proxy saw appended on the right."""
    return {"X-Forwarded-For": f"{spoofed}, {client_addr}"}


def test_rate_limit_per_client_in_memory(app_factory):
    """Clients are told apart by the address the trusted proxy appended: whatever a client puts
    left of it (here a different value on every request) does not buy it a fresh budget."""
    client = app_factory("limited", ["DCP"], {"rate_limit": "4/minute", "client_ip_header": "X-Forwarded-For"})
    img = _png()
    codes = [client.post("/v1/dehaze/DCP", content=img, headers=_via_proxy("203.0.113.1", f"10.9.9.{i}"))
             for i in range(6)]
    assert [r.status_code for r in codes] == [200, 200, 200, 200, 429, 429]
    assert codes[0].headers["ratelimit-limit"] == "4" and codes[0].headers["ratelimit-remaining"] == "3"
    denied = codes[-1]
    assert denied.json()["error"]["code"] == "rate_limited"
    assert int(denied.headers["retry-after"]) >= 1 and denied.headers["ratelimit-remaining"] == "0"
    # nor does an API-key header of its own choosing (auth is off: nothing verifies it)
    assert client.post("/v1/dehaze/DCP", content=img, headers={
        **_via_proxy("203.0.113.1", "x"), "X-API-Key": "fresh", "Authorization": "Bearer fresh"}).status_code == 429
    # another client (another proxy-appended address, same spoofed value) is still served,
    # and health is never limited
    assert client.post("/v1/dehaze/DCP", content=img, headers=_via_proxy("203.0.113.2", "10.9.9.0")).status_code == 200
    assert client.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("DEHAZE_REQUIRE_SYSTEM_PROGRAMS"):
            pytest.fail("redis-server is not installed; .ci/run installs it (Debian package redis-server)")
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_two_ingress_replicas_share_one_redis_limit(app_factory, redis_url):
    client = app_factory("shared", ["DCP"], {"rate_limit": "6/minute", "rate_limit_storage_uri": redis_url,
                                            "client_ip_header": "X-Forwarded-For"},
                         {"Ingress": {"num_replicas": 2}})
    img = _png(seed=1)

    async def burst():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=120) as ac:
            return await asyncio.gather(*[ac.post("/v1/dehaze/DCP", content=img,
                                                  headers=_via_proxy("203.0.113.20", f"spoof-{i}"))
                                          for i in range(16)])

    replies = asyncio.run(burst())
    ok = [r for r in replies if r.status_code == 200]
    assert len(ok) == 6, [r.status_code for r in replies]
    assert all(r.status_code == 429 for r in replies if r.status_code != 200)
    replicas = {r.headers["x-replica"] for r in ok}
    for _ in range(20):  # make sure both replicas answered (requests are spread at random)
        if len(replicas) >= 2:
            break
        r = client.post("/v1/dehaze/DCP", content=img, headers=_via_proxy(f"203.0.113.{100 + _}", "x"))
        replicas.add(r.headers["x-replica"])
    assert len(replicas) == 2, "the test needs both ingress replicas to have served"


def test_bearer_token_auth(app_factory):
    client = app_factory("secured", ["DCP"], {"auth_tokens": "t0ken-one,t0ken-two"})
    img = _png(seed=2)
    missing = client.post("/v1/dehaze/DCP", content=img)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/dehaze/DCP", content=img, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/models").status_code == 401
    for token in ("t0ken-one", "t0ken-two"):
        assert client.post("/v1/dehaze/DCP", content=img,
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_rotated_tokens_file_takes_effect_without_restart(app_factory, tmp_path):
    """docs/deploy.md: updating the Secret rotates tokens. The ingress re-reads the file when it
    changes (checked every auth_tokens_check_s)."""
    tokens = tmp_path / "tokens"
    tokens.write_text("first-token\n")
    client = app_factory("rotating", ["DCP"], {"auth_tokens_file": str(tokens), "auth_tokens_check_s": 0.5})
    img = _png(seed=7)

    def status(token: str) -> int:
        return client.post("/v1/dehaze/DCP", content=img, headers={"Authorization": f"Bearer {token}"}).status_code

    assert status("first-token") == 200 and status("second-token") == 401
    new = tmp_path / "tokens.new"  # swapped in whole, like the kubelet does
    new.write_text("second-token\n")
    new.replace(tokens)
    deadline = time.time() + 30
    while status("first-token") != 401 and time.time() < deadline:
        time.sleep(0.5)
    assert status("first-token") == 401
    assert status("second-token") == 200


def test_max_models_per_replica_sizes_the_variant_lru(app_factory, ops_root):
    """Settings.max_models_per_replica is the @serve.multiplexed capacity: with 1, alternating
    two variants on one replica reloads each time (the old hard-coded 3 kept both)."""
    log = ops_root / "loads.log"
    log.unlink(missing_ok=True)
    client = app_factory("lru", ["Echo"], {"max_models_per_replica": 1}, {"Echo": {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        "ray_actor_options": {"runtime_env": {"env_vars": {"PYTHONPATH": str(ops_root)}}}}})
    for i, variant in enumerate(["a", "b", "a", "b"]):
        r = client.post(f"/v1/dehaze/Echo?variant={variant}", content=_png(seed=20 + i))
        assert r.status_code == 200 and r.headers["x-variant"] == variant, r.text
    assert log.read_text().split() == ["a", "b", "a", "b"]


def test_saturated_model_answers_503_with_retry_after(app_factory, ops_root):
    client = app_factory("busy", ["Slow"], overrides={"Slow": {
        "max_ongoing_requests": 1, "max_queued_requests": 1,
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        "ray_actor_options": {"runtime_env": {"env_vars": {"PYTHONPATH": str(ops_root)}}}}})
    assert client.post("/v1/dehaze/Slow", content=_png(seed=3)).status_code == 200  # warm

    async def burst():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=120) as ac:
            return await asyncio.gather(*[ac.post("/v1/dehaze/Slow", content=_png(seed=10 + i)) for i in range(6)])

    replies = asyncio.run(burst())
    codes = sorted(r.status_code for r in replies)
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.json()["error"]["code"] == "overloaded" and busy.headers["retry-after"] == "1"
    assert client.post("/v1/dehaze/Slow", content=_png(seed=4)).status_code == 200  # recovers


def _scrape(url: str) -> str:
    return httpx.get(url, timeout=10).text


def _samples(text: str):
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and not line.startswith("#"):
            yield m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")), float(m.group(3))


def _total(text: str, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in _samples(text) if n == name and all(lab.get(k) == x for k, x in labels.items()))


def test_prometheus_endpoint_exports_our_metrics(ray_serve, app_factory, shared_dir):
    client = app_factory("metered", ["DCP"], {"auth_tokens": "metrics-token"})
    auth = {"Authorization": "Bearer metrics-token"}
    hazy = (shared_dir / "data" / "sots-indoor" / "hazy" / "1400_5.png").read_bytes()
    for _ in range(3):
        assert client.post("/v1/dehaze/DCP", content=hazy, headers=auth).status_code == 200
    assert client.post("/v1/dehaze/DCP", content=b"not an image", headers=auth).status_code == 415
    assert client.post("/v1/dehaze/DCP", content=hazy).status_code == 401  # no token
    assert client.post("/v1/evaluate", files={"image": ("a.png", hazy, "image/png")}, headers=auth).status_code == 200
    assert client.post("/v1/evaluate", content=b"{oops", headers={**auth, "Content-Type": "application/json"}
                       ).status_code == 400
    assert client.post("/model/evaluation", content=b"{oops", headers=auth).status_code == 422
    wanted = [n for n in METRIC_NAMES if n not in CONDITIONAL_METRICS]  # GPU: CUDA only; batches: networks
    # the dashboard's series that a CPU-only cluster exports (no GPU gauges, no batching here)
    dashboard = sorted(n for n in grafana.M.values() if not re.search(r"gpu|gram|batch", n))

    def problems(text: str) -> list[str]:
        names = {n for n, _, _ in _samples(text)}
        found = [f"not exported: {n}" for n in wanted if not any(x.startswith(f"ray_{n}") for x in names)]
        found += [f"dashboard series not in the scrape: {n}" for n in dashboard if n not in names]
        checks = {
            "requests": _total(text, "ray_dehaze_requests_total", model="DCP", route="dehaze") >= 5,
            "415 errors": _total(text, "ray_dehaze_errors_total", model="DCP", route="dehaze", code="415") >= 1,
            "401 errors": _total(text, "ray_dehaze_errors_total", model="DCP", variant="DCP", route="dehaze",
                                 code="401") >= 1,
            "evaluate requests": _total(text, "ray_dehaze_requests_total", route="evaluate") >= 2,
            "evaluate 400": _total(text, "ray_dehaze_errors_total", route="evaluate", code="400") >= 1,
            "legacy 422": _total(text, "ray_dehaze_errors_total", route="legacy_evaluation", code="422") >= 1,
            "cache hits": _total(text, "ray_dehaze_cache_hits_total", model="DCP") >= 2,
            "inference latency": _total(text, "ray_dehaze_stage_latency_ms_count", stage="inference") >= 1,
            "megapixels by variant": _total(text, "ray_dehaze_input_megapixels_count", model="DCP", variant="DCP") >= 1,
            "haze score falls": _total(text, "ray_dehaze_haze_score_sum", model="DCP", side="input")
            > _total(text, "ray_dehaze_haze_score_sum", model="DCP", side="output") > 0,
        }
        return found + [name for name, ok in checks.items() if not ok]

    deadline = time.time() + 90  # Ray exports metrics every few seconds
    while True:
        issues = problems(_scrape(ray_serve.metrics_url))
        if not issues or time.time() > deadline:
            break
        time.sleep(3)
    assert not issues


def test_replica_failing_its_health_probe_is_restarted(app_factory, ops_root):
    """ModelServer.check_health runs a tiny inference every health_probe_interval_s; when it
    fails, Serve replaces the replica, and the new one serves again."""
    marker = ops_root / "broken.marker"
    marker.unlink(missing_ok=True)
    client = app_factory("health", ["Flaky"], {"health_probe_interval_s": 1.0}, {"Flaky": {
        "health_check_period_s": 1, "health_check_timeout_s": 10,
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        "ray_actor_options": {"runtime_env": {"env_vars": {"PYTHONPATH": str(ops_root)}}}}})
    img = _png(seed=5)
    assert client.post("/v1/dehaze/Flaky", content=img).status_code == 200  # loads the model
    (before,) = replica_names("health", "Flaky")
    marker.write_text("broken")
    try:
        deadline = time.time() + 90
        after = [before]
        while time.time() < deadline:  # the old replica is stopped once its successor is up
            after = replica_names("health", "Flaky")
            if after and before not in after:
                break
            time.sleep(1)
        assert after and before not in after, "Serve did not replace the unhealthy replica"
    finally:
        marker.unlink(missing_ok=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        r = client.post("/v1/dehaze/Flaky", content=_png(seed=6))
        if r.status_code == 200:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text
