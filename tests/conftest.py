"""Shared fixtures. ../shared (conformance vectors, real weights, test images) is reached only
through the ``shared_dir`` fixture: env DEHAZE_SHARED, default ../shared next to the repo."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `make test` runs two pytest-xdist workers on this 2-core machine. Idle OpenMP threads must
# sleep, not spin, or one worker's math threads starve the other's (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def shared_path() -> Path | None:
    p = Path(os.environ.get("DEHAZE_SHARED", REPO.parent / "shared")).resolve()
    return p if (p / "DESIGN.md").exists() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = shared_path()
    if p is None:
        pytest.skip("../shared (DEHAZE_SHARED) is absent: conformance vectors, weights and test images are not available in this clone")
    return p


@pytest.fixture(scope="session")
def conformance(shared_dir):
    """The shared/conformance helper module (load_variant, conformance_state_dict)."""
    d = str(shared_dir / "conformance")
    if d not in sys.path:
        sys.path.insert(0, d)
    import conformance as mod  # noqa: PLC0415

    return mod


# --- real components: SeaweedFS S3 server, local Ray cluster ----------------------------------

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_grpc_port_pair() -> int:
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


class SeaweedS3:
    """A real S3-compatible server (SeaweedFS `weed server -s3`) on loopback, with credentials."""

    access_key = "dehaze-test"
    secret_key = "dehaze-test-secret-key"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="weed-"))
        self.port = _free_grpc_port_pair()
        self.proc: subprocess.Popen | None = None
        # weed listens on port + 10000 for gRPC: choose ports where both are free
        self.ports = {name: _free_grpc_port_pair() for name in ("master", "volume", "filer")}
        self.config = self.dir / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "test", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        (self.dir / "data").mkdir(exist_ok=True)
        cmd = [
            weed, "server", f"-dir={self.dir / 'data'}", "-s3", f"-s3.port={self.port}", f"-s3.config={self.config}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={self.ports['master']}",
            f"-volume.port={self.ports['volume']}", f"-filer.port={self.ports['filer']}",
            f"-s3.port.grpc={self.port + 10000}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
            "-master.volumeSizeLimitMB=16", "-volume.max=100",  # one collection per bucket
        ]
        self.log = open(self.dir / "weed.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not _wait_port(self.port, 60):
            self.stop()
            raise RuntimeError(f"SeaweedFS S3 did not come up; see {self.dir / 'weed.log'}")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        from minio import Minio

        client = Minio(self.endpoint, self.access_key, self.secret_key, secure=False)
        deadline = time.time() + timeout
        while True:
            try:
                name = "ready-probe"
                if not client.bucket_exists(name):
                    client.make_bucket(name)
                import io as _io

                client.put_object(name, "probe", _io.BytesIO(b"x"), 1)
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def settings(self, bucket: str) -> dict:
        return {"storage_backend": "s3", "s3_endpoint": self.endpoint, "s3_access_key": self.access_key,
                "s3_secret_key": self.secret_key, "s3_bucket": bucket, "s3_secure": False}


@pytest.fixture(scope="session")
def s3_server():
    server = SeaweedS3()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


class RayServe:
    def __init__(self, url: str, metrics_url: str):
        self.url = url
        self.metrics_url = metrics_url


@pytest.fixture(scope="session")
def ray_serve():
    """One local Ray cluster (2 CPUs) with Serve's HTTP proxy on a free loopback port and Ray's
    Prometheus metrics endpoint on another. Per test session: under `make test` each pytest-xdist
    worker that runs a Ray test starts its own cluster, and a module's deployments are made in
    every cluster that runs one of its tests (so tests find replicas through Ray, never by
    process title, which repeats across clusters)."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    metrics_port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _metrics_export_port=metrics_port)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield RayServe(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")
    serve.shutdown()
    ray.shutdown()


def deploy(app_args: dict, name: str, route_prefix: str):
    """serve.run an application of build_app (non-blocking); returns once it is RUNNING."""
    from ray import serve

    from serve_app.app import build_app

    serve.run(build_app(app_args), name=name, route_prefix=route_prefix, blocking=False)


@pytest.fixture(scope="session")
def sots_pairs(shared_dir):
    """The 100 SOTS-indoor (hazy, ground truth) pairs as uint8 RGB arrays: [(name, hazy, gt)]."""
    import cv2

    root = shared_dir / "data" / "sots-indoor"
    pairs = []
    for hazy_path in sorted((root / "hazy").glob("*.png")):
        scene = hazy_path.stem.split("_")[0]
        hazy = cv2.cvtColor(cv2.imread(str(hazy_path)), cv2.COLOR_BGR2RGB)
        gt = cv2.cvtColor(cv2.imread(str(root / "gt" / f"{scene}.png")), cv2.COLOR_BGR2RGB)
        pairs.append((hazy_path.stem, hazy, gt))
    assert len(pairs) == 100
    return pairs


def replica_names(app: str, deployment: str) -> list[str]:
    """Names of the live replica actors of a deployment (Serve names them SERVE_REPLICA::app#dep#id)."""
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#{deployment}#")]
