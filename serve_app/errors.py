"""Typed errors of the service and the one table that maps every error class to an HTTP status.

Errors travel between Ray replicas as (class name, message) pairs (:func:`to_wire` /
:func:`from_wire`) so the ingress re-raises the same typed error the model raised. Errors the
web framework raises itself (Starlette's ``HTTPException``: malformed multipart, unknown route,
wrong method) become typed errors too (:func:`from_http_status`), so every reply has one schema.
"""
from __future__ import annotations

import re
from http import HTTPStatus

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


class InvalidRequestError(DehazeError):
    """Path, query or JSON fields that fail validation (FastAPI's RequestValidationError)."""

    code = "invalid_request"


class InternalError(DehazeError):
    """An unexpected exception (a bug): the client gets this, the log the traceback."""

    code = "internal_error"


class RouteNotFoundError(DehazeError):
    code = "not_found"


class MethodNotAllowedError(DehazeError):
    code = "method_not_allowed"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = headers or {}


class HTTPStatusError(DehazeError):
    """Any other error status raised by the web framework, kept with that status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        try:
            self.code = re.sub(r"[^a-z0-9]+", "_", HTTPStatus(status).phrase.lower()).strip("_")
        except ValueError:
            self.code = "http_error"


class RateLimitedError(DehazeError):
    code = "rate_limited"

    def __init__(self, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.headers = headers


STATUS: dict[type[DehazeError], int] = {
    BadRequestError: 400,
    ForbiddenSourceError: 400,
    UnauthorizedError: 401,
    RouteNotFoundError: 404,
    UnknownModelError: 404,
    UnknownVariantError: 404,
    ObjectNotFoundError: 404,
    MethodNotAllowedError: 405,
    RequestTimeoutError: 408,
    PayloadTooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidImageError: 422,
    InvalidRequestError: 422,
    RateLimitedError: 429,
    RegistryError: 500,
    InternalError: 500,
    ModelFailedError: 500,
    WeightsUnavailableError: 503,
    CheckpointFormatError: 503,
    StorageUnavailableError: 503,
    OverloadedError: 503,
}

_BY_NAME = {cls.__name__: cls for cls in STATUS}


def status_of(exc: DehazeError) -> int:
    if isinstance(exc, HTTPStatusError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


#: statuses Starlette/FastAPI raise as HTTPException -> our typed error for each
_FRAMEWORK_STATUS: dict[int, type[DehazeError]] = {
    400: BadRequestError,  # malformed multipart (no boundary, broken parts, too many fields)
    404: RouteNotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaError,
    422: InvalidRequestError,
}


def from_http_status(status: int, detail: object, headers: dict[str, str] | None = None) -> DehazeError:
    """The typed error for an HTTPException the framework raised (same status, its detail as message)."""
    message = detail if isinstance(detail, str) and detail else _phrase(status)
    cls = _FRAMEWORK_STATUS.get(status)
    if cls is None:
        return HTTPStatusError(status, message, headers)
    if cls is MethodNotAllowedError:
        return MethodNotAllowedError(message, headers)
    exc = cls(message)
    if headers:
        exc.headers = dict(headers)
    return exc


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP error {status}"


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
