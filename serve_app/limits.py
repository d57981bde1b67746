"""Request guard of the ingress: optional bearer-token auth and per-client rate limits.

Auth: tokens come from DEHAZE_AUTH_TOKENS (comma-separated) and/or DEHAZE_AUTH_TOKENS_FILE (one
per line, e.g. a mounted Kubernetes Secret); every token is compared in constant time. With no
token configured, auth is off (local use). Health routes are never guarded.

Rate limits (``limits`` library, moving window): the client is the API key (a hash of the
bearer token or X-API-Key) if present, else the configured forwarded-for header, else the peer
address. Storage ``memory://`` limits per ingress replica; a ``redis://`` URI gives one global
limit across replicas. Over the limit: 429 with Retry-After and RateLimit-* headers.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import time
from pathlib import Path

from serve_app.errors import RateLimitedError, UnauthorizedError
from serve_app.settings import Settings


def load_tokens(settings: Settings) -> list[bytes]:
    tokens = [t.strip() for t in settings.auth_tokens.get_secret_value().split(",") if t.strip()]
    if settings.auth_tokens_file:
        path = Path(settings.auth_tokens_file)
        tokens += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [t.encode() for t in tokens]


class RequestGuard:
    def __init__(self, settings: Settings):
        self.tokens = load_tokens(settings)
        self.forwarded_header = settings.client_ip_header.lower() if settings.client_ip_header else None
        self.limit = None
        if settings.rate_limit:
            from limits import parse
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter

            self.limit = parse(settings.rate_limit)
            self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    def _bearer(self, headers) -> str | None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    def authenticate(self, headers) -> None:
        if not self.tokens:
            return
        given = (self._bearer(headers) or "").encode()
        ok = False
        for token in self.tokens:  # no early exit: time does not depend on which token matched
            ok |= hmac.compare_digest(given, token)
        if not given or not ok:
            raise UnauthorizedError("missing or invalid bearer token")

    def client_id(self, headers, peer: str | None) -> str:
        key = self._bearer(headers) or headers.get("x-api-key")
        if key:
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
        if self.forwarded_header and headers.get(self.forwarded_header):
            return "ip:" + headers[self.forwarded_header].split(",")[0].strip()
        return "ip:" + (peer or "unknown")

    def check_rate(self, headers, peer: str | None) -> dict[str, str]:
        """Consume one request of the client's budget; returns RateLimit-* headers."""
        if self.limit is None:
            return {}
        who = self.client_id(headers, peer)
        allowed = self.limiter.hit(self.limit, "dehaze", who)
        reset_at, remaining = self.limiter.get_window_stats(self.limit, "dehaze", who)
        reset_in = max(0, math.ceil(reset_at - time.time()))
        headers_out = {
            "RateLimit-Limit": str(self.limit.amount),
            "RateLimit-Remaining": str(max(0, remaining)),
            "RateLimit-Reset": str(reset_in),
        }
        if not allowed:
            raise RateLimitedError(
                f"rate limit of {self.limit} exceeded; retry in {max(1, reset_in)} s",
                {**headers_out, "Retry-After": str(max(1, reset_in))},
            )
        return headers_out

    def __call__(self, request) -> dict[str, str]:
        self.authenticate(request.headers)
        peer = request.client.host if request.client else None
        return self.check_rate(request.headers, peer)
