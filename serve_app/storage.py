"""Object storage: a local directory (embedded default) or S3 / MinIO through the ``minio`` SDK.

Keys are content hashes: ``inputs/<sha256>.<ext>`` for uploaded images and
``results/<model>/<variant>/<input sha256>.<fmt>`` for outputs, so a repeated request is a
cache hit (the legacy system did this with MySQL by md5). Writes are atomic: a local object
appears by ``os.replace`` of a fully written temp file; an S3 object is visible only when
its PUT completes. URLs are handed out only after the write returned.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from serve_app.errors import BadRequestError, ForbiddenSourceError, ObjectNotFoundError, StorageUnavailableError
from serve_app.settings import Settings

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")


def validate_key(key: str) -> str:
    """Object keys: relative, '/'-separated, no '..', no NUL, no leading '/', <= 512 chars."""
    if not isinstance(key, str) or not key or len(key) > 512 or not _KEY_RE.match(key):
        raise BadRequestError(
            f"invalid object key {key[:80]!r}: use letters, digits, '.', '_', '-' and '/' "
            "(no '..', no leading '/')" if isinstance(key, str) else "object key must be a string"
        )
    if any(part in (".", "..") for part in key.split("/")):
        raise BadRequestError(f"invalid object key {key[:80]!r}: '.' and '..' segments are not allowed")
    return key


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_key(digest: str, ext: str) -> str:
    return f"inputs/{digest}.{ext}"


def result_key(model: str, variant: str, digest: str, fmt: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9._\-]", "_", s)  # noqa: E731
    return f"results/{safe(model)}/{safe(variant)}/{digest}.{fmt}"


class Storage(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str, max_bytes: int | None = None) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """A URL a client can GET the object from (presigned on S3)."""

    @abstractmethod
    def ping(self) -> str | None:
        """None when reachable, else the reason."""

    @abstractmethod
    def key_from_url(self, url: str) -> str:
        """The key of one of OUR objects from its URL (or the key itself); never another host."""

    def describe(self) -> str:
        return type(self).__name__


class LocalStorage(Storage):
    """Objects as files under one directory; served by the ingress at GET /v1/objects/{key}."""

    def __init__(self, root: str | Path, public_base_url: str = ""):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base_url = public_base_url.rstrip("/")

    def _path(self, key: str) -> Path:
        p = (self.root / validate_key(key)).resolve()
        if self.root not in p.parents:
            raise BadRequestError(f"invalid object key {key[:80]!r}")
        return p

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                from serve_app.errors import PayloadTooLargeError

                raise PayloadTooLargeError(f"object {key} is {size} bytes; the limit is {max_bytes}")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"object {key!r} not found") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url(self, key: str) -> str:
        return f"{self.public_base_url}/v1/objects/{quote(validate_key(key))}"

    def ping(self) -> str | None:
        return None if self.root.is_dir() and os.access(self.root, os.W_OK) else f"{self.root} is not writable"

    def key_from_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme == "" and parts.netloc == "" and not url.startswith("/"):
            return validate_key(url)
        if parts.scheme not in ("", "http", "https"):
            raise ForbiddenSourceError(f"URL scheme {parts.scheme!r} is not allowed; only our own storage URLs")
        if parts.netloc:
            own = urlsplit(self.public_base_url).netloc if self.public_base_url else None
            if own is None or parts.netloc != own:
                raise ForbiddenSourceError(
                    f"URL host {parts.netloc!r} is not this service's storage; the service never fetches other hosts"
                )
        prefix = "/v1/objects/"
        if not parts.path.startswith(prefix):
            raise ForbiddenSourceError("URL does not point into this service's storage (/v1/objects/...)")
        return validate_key(unquote(parts.path[len(prefix) :]))

    def describe(self) -> str:
        return f"local:{self.root}"


class S3Storage(Storage):
    """S3 / MinIO bucket through the minio SDK; presigned GET URLs."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, region: str | None = None, presign_expiry_s: int = 3600):
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.expiry = timedelta(seconds=presign_expiry_s)
        http = PoolManager(timeout=Timeout(connect=3.0, read=30.0), retries=Retry(total=1, backoff_factor=0.2),
                           maxsize=16)
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            region=region, http_client=http)
        self._bucket_ready = False
        self._lock = threading.Lock()

    def _call(self, fn, *args, **kwargs):
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise ObjectNotFoundError(f"object not found ({exc.code})") from exc
            raise StorageUnavailableError(f"object storage error: {exc.code}") from exc
        except (HTTPError, OSError) as exc:
            raise StorageUnavailableError(f"object storage at {self.endpoint} is unreachable ({type(exc).__name__})") from exc

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock:
            if not self._call(self.client.bucket_exists, self.bucket):
                self._call(self.client.make_bucket, self.bucket)
            self._bucket_ready = True

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.ensure_bucket()
        self._call(self.client.put_object, self.bucket, validate_key(key), io.BytesIO(data), len(data),
                   content_type=content_type)

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        key = validate_key(key)
        if max_bytes is not None:
            stat = self._call(self.client.stat_object, self.bucket, key)
            if stat.size > max_bytes:
                from serve_app.errors import PayloadTooLargeError

                raise PayloadTooLargeError(f"object {key} is {stat.size} bytes; the limit is {max_bytes}")
        resp = self._call(self.client.get_object, self.bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.stat_object, self.bucket, validate_key(key))
            return True
        except ObjectNotFoundError:
            return False

    def url(self, key: str) -> str:
        return self._call(self.client.presigned_get_object, self.bucket, validate_key(key), expires=self.expiry)

    def ping(self) -> str | None:
        """A real round trip every call (readiness must notice an outage)."""
        try:
            if not self._call(self.client.bucket_exists, self.bucket):
                self._bucket_ready = False
                self.ensure_bucket()
            return None
        except (StorageUnavailableError, ObjectNotFoundError) as exc:
            self._bucket_ready = False
            return exc.message

    def key_from_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme == "" and parts.netloc == "" and not url.startswith("/"):
            return validate_key(url)
        if parts.scheme not in ("http", "https"):
            raise ForbiddenSourceError(f"URL scheme {parts.scheme!r} is not allowed; only our own storage URLs")
        if parts.netloc != self.endpoint:
            raise ForbiddenSourceError(
                f"URL host {parts.netloc!r} is not this service's storage; the service never fetches other hosts"
            )
        prefix = f"/{self.bucket}/"
        if not parts.path.startswith(prefix):
            raise ForbiddenSourceError(f"URL is not in bucket {self.bucket!r}")
        return validate_key(unquote(parts.path[len(prefix) :]))

    def describe(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"


class S3Weights:
    """A weights root ``s3://bucket/prefix``: files are fetched once into a local cache."""

    def __init__(self, storage: S3Storage, prefix: str, cache_dir: Path):
        self.storage = storage
        self.prefix = prefix.strip("/")
        self.cache_dir = Path(cache_dir)

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def describe(self) -> str:
        return f"s3://{self.storage.bucket}/{self.prefix}"

    def missing_reason(self, relpath: str) -> str | None:
        if (self.cache_dir / relpath).is_file():
            return None
        try:
            return None if self.storage.exists(self._key(relpath)) else f"weights {relpath} not found in {self.describe()}"
        except StorageUnavailableError as exc:
            return exc.message

    def fetch(self, relpath: str) -> Path:
        from algorithms.errors import WeightsUnavailableError

        target = self.cache_dir / relpath
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        try:
            self.storage._call(self.storage.client.fget_object, self.storage.bucket, self._key(relpath), str(tmp))
            os.replace(tmp, target)
        except (ObjectNotFoundError, StorageUnavailableError) as exc:
            tmp.unlink(missing_ok=True)
            raise WeightsUnavailableError(f"weights {relpath}: {exc.message}") from exc
        return target


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(
            settings.s3_endpoint, settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(), settings.s3_bucket, settings.s3_secure,
            settings.s3_region, settings.presign_expiry_s,
        )
    return LocalStorage(settings.storage_dir, settings.public_base_url)


def make_weights_store(settings: Settings):
    """The weights root of the settings: a local directory or s3://bucket/prefix."""
    root = settings.weights_root
    if root.startswith("s3://"):
        bucket, _, prefix = root[len("s3://") :].partition("/")
        s3 = S3Storage(
            settings.s3_endpoint, settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(), bucket, settings.s3_secure, settings.s3_region,
        )
        return S3Weights(s3, prefix, settings.weights_cache_dir)
    from algorithms.registry import LocalWeights

    return LocalWeights(root)
