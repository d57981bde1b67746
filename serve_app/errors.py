"""Typed errors of the service and the one table that maps every error class to an HTTP status.

Errors travel between Ray replicas as (class name, message) pairs (:func:`to_wire` /
:func:`from_wire`) so the ingress re-raises the same typed error the model raised.
"""
from __future__ import annotations

from algorithms.errors import (
    CheckpointFormatError,
    DehazeError,
    InvalidImageError,
    RegistryError,
    UnknownModelError,
    UnknownVariantError,
    WeightsUnavailableError,
)


class BadRequestError(DehazeError):
    code = "bad_request"


class UnsupportedMediaError(DehazeError):
    code = "unsupported_media_type"


class PayloadTooLargeError(DehazeError):
    code = "payload_too_large"


class ObjectNotFoundError(DehazeError):
    code = "object_not_found"


class ForbiddenSourceError(DehazeError):
    """A URL that does not point into our own storage (we never fetch other hosts)."""

    code = "forbidden_source"


class StorageUnavailableError(DehazeError):
    code = "storage_unavailable"


class OverloadedError(DehazeError):
    code = "overloaded"


class ModelFailedError(DehazeError):
    code = "model_failed"


class RequestTimeoutError(DehazeError):
    code = "request_timeout"


class UnauthorizedError(DehazeError):
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Bearer realm="dehaze"'}


class RateLimitedError(DehazeError):
    code = "rate_limited"

    def __init__(self, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.headers = headers


STATUS: dict[type[DehazeError], int] = {
    BadRequestError: 400,
    ForbiddenSourceError: 400,
    UnauthorizedError: 401,
    UnknownModelError: 404,
    UnknownVariantError: 404,
    ObjectNotFoundError: 404,
    RequestTimeoutError: 408,
    PayloadTooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidImageError: 422,
    RateLimitedError: 429,
    RegistryError: 500,
    ModelFailedError: 500,
    WeightsUnavailableError: 503,
    CheckpointFormatError: 503,
    StorageUnavailableError: 503,
    OverloadedError: 503,
}

_BY_NAME = {cls.__name__: cls for cls in STATUS}


def status_of(exc: DehazeError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def to_wire(exc: DehazeError) -> dict:
    return {"type": type(exc).__name__, "message": exc.message}


def from_wire(payload: dict) -> DehazeError:
    cls = _BY_NAME.get(payload.get("type", ""), ModelFailedError)
    return cls(payload.get("message", "model failed"))


def error_headers(exc: DehazeError) -> dict[str, str] | None:
    """Headers an error reply must carry (Retry-After, WWW-Authenticate, RateLimit-*)."""
    headers = dict(getattr(exc, "headers", None) or {})
    if isinstance(exc, (OverloadedError, StorageUnavailableError, ModelFailedError)):
        headers.setdefault("Retry-After", "1")
    return headers or None


def error_body(exc: DehazeError) -> dict:
    return {"error": {"code": exc.code, "message": exc.message}}
