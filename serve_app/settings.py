"""Service settings from the environment (prefix ``DEHAZE_``), read once through get_settings()."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEHAZE_", env_file=None, extra="ignore")

    # registry and weights
    registry_path: Path = REPO_ROOT / "configs" / "models.yaml"
    serve_config_path: Path = REPO_ROOT / "configs" / "serve.yaml"
    weights_root: str = "./weights"
    weights_cache_dir: Path = Path("./.dehaze/weights-cache")

    # storage: "local" (a directory, embedded default) or "s3" (MinIO / any S3)
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Path("./.dehaze/storage")
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "dehaze"
    s3_secure: bool = False
    s3_region: str | None = None
    presign_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    #: base URL under which local-storage objects are served (GET /v1/objects/{key})
    public_base_url: str = ""

    # inputs
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=256)
    max_json_bytes: int = Field(64 * 1024, ge=256)
    #: a request body must arrive completely within this many seconds (slow or endless bodies: 408)
    body_timeout_s: float = Field(30.0, gt=0)
    jpeg_quality: int = Field(95, ge=1, le=100)

    # auth and rate limits (serve_app/limits.py)
    #: comma-separated bearer tokens; empty (and no file) = auth off
    auth_tokens: SecretStr = SecretStr("")
    #: file with one bearer token per line (e.g. a mounted Kubernetes Secret); re-read when it
    #: changes, so rotating the Secret needs no restart. Set = auth on, even while it is empty
    auth_tokens_file: str | None = None
    #: at most this often (seconds) the tokens file's inode/size/mtime are looked at (one stat)
    auth_tokens_check_s: float = Field(5.0, ge=0)
    #: per-client limit in `limits` notation, e.g. "60/minute"; empty = no limit
    rate_limit: str | None = None
    #: "memory://" (per ingress replica) or "redis://host:port" (one limit across replicas)
    rate_limit_storage_uri: str = "memory://"
    #: header naming the client address behind a trusted proxy, e.g. "X-Forwarded-For"
    client_ip_header: str | None = None
    #: proxies of ours that append to that header: the client is the entry this many places
    #: from the right (entries further left are written by the client and never trusted)
    trusted_proxy_hops: int = Field(1, ge=1)

    # inference
    device: str = "auto"
    tile_size: int = Field(1024, ge=64)
    tile_overlap: int = Field(64, ge=0)
    #: torch.compile networks (off by default: long first call per shape); channels-last memory
    #: format (unset: each network's measured preference, IOFacts.channels_last); see
    #: benchmarks/fastpaths.py for what helps on your hardware
    torch_compile: bool = False
    channels_last: bool | None = None
    #: variants kept loaded per replica (the LRU of @serve.multiplexed; read by each ModelServer)
    max_models_per_replica: int = Field(2, ge=1)
    #: seconds between the tiny health-probe inferences of an idle replica
    health_probe_interval_s: float = Field(300.0, ge=1.0)
    #: "auto": GPU options from configs/serve.yaml when the cluster has GPUs, else CPU profile
    profile: Literal["auto", "gpu", "cpu"] = "auto"


    def runtime(self, device: str | None = None, threads: int | None = None):
        """The RuntimeOptions every Dehazer of this process is built with."""
        from algorithms.common.runtime import RuntimeOptions

        return RuntimeOptions(device=device or self.device, tile_size=self.tile_size, tile_overlap=self.tile_overlap,
                              threads=threads, channels_last=self.channels_last, compile=self.torch_compile)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_with(overrides: dict | None = None) -> Settings:
    """The process settings, or a copy with some fields replaced (per-application overrides)."""
    if not overrides:
        return get_settings()
    return Settings(**{**get_settings().model_dump(), **overrides})
