"""Request guard of the ingress: optional bearer-token auth and per-client rate limits.

Auth: tokens come from DEHAZE_AUTH_TOKENS (comma-separated) and/or DEHAZE_AUTH_TOKENS_FILE (one
per line, e.g. a mounted Kubernetes Secret); every token is compared in constant time. The file
is re-read when it changes (its inode, size or mtime, looked at no more often than every
DEHAZE_AUTH_TOKENS_CHECK_S seconds), so rotating the Secret takes effect without a restart. With
a tokens file configured auth stays on even while the file lists no token (nothing is accepted):
a rotation caught half-written never opens the service. With no token and no file, auth is off
(local use). Health routes are never guarded.

Rate limits (``limits`` library, moving window): the client is the bearer token (a hash of it)
when auth is on, since it was verified first; else the address a trusted proxy put in the
configured forwarded-for header, else the peer address. Only the right-most
DEHAZE_TRUSTED_PROXY_HOPS entries of X-Forwarded-For were written by our own proxies; entries
left of those come from the client and are ignored. Storage ``memory://`` limits per ingress
replica; a ``redis://`` URI gives one global limit across replicas. Over the limit: 429 with
Retry-After and RateLimit-* headers.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import time
from pathlib import Path

from serve_app.errors import RateLimitedError, UnauthorizedError
from serve_app.settings import Settings

logger = logging.getLogger("ray.serve")


def parse_token_file(text: str) -> list[bytes]:
    """One token per line; blank lines and ``#`` comments are skipped."""
    return [line.strip().encode() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class TokenSource:
    """The accepted bearer tokens: the fixed ones from the environment plus the tokens file,
    re-read when the file changes (checked at most every ``check_s`` seconds: one stat())."""

    def __init__(self, settings: Settings, clock=time.monotonic):
        self.fixed = [t.strip().encode() for t in settings.auth_tokens.get_secret_value().split(",") if t.strip()]
        self.path = Path(settings.auth_tokens_file) if settings.auth_tokens_file else None
        self.check_s = settings.auth_tokens_check_s
        self._clock = clock
        self._from_file: list[bytes] = []
        self._signature: tuple | None = None
        self._next_check = 0.0
        if self.path is not None:
            self._refresh(initial=True)
            self._next_check = clock() + self.check_s

    @property
    def enabled(self) -> bool:
        return bool(self.fixed) or self.path is not None

    def current(self) -> list[bytes]:
        if self.path is not None:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self.check_s
                self._refresh()
        return self.fixed + self._from_file

    def _refresh(self, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)  # follows the ..data symlink of a mounted Secret
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if signature == self._signature:
                return
            tokens = parse_token_file(self.path.read_text())
        except OSError as exc:
            if initial:
                raise
            logger.warning("auth tokens file %s unreadable (%s); keeping the previous tokens", self.path, exc)
            return
        self._from_file, self._signature = tokens, signature
        if not initial:
            logger.info("auth tokens file %s changed: %d token(s) loaded", self.path, len(tokens))


class RequestGuard:
    def __init__(self, settings: Settings, clock=time.monotonic):
        self.tokens = TokenSource(settings, clock)
        self.forwarded_header = settings.client_ip_header.lower() if settings.client_ip_header else None
        self.proxy_hops = settings.trusted_proxy_hops
        self.limit = None
        if settings.rate_limit:
            from limits import parse
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter

            self.limit = parse(settings.rate_limit)
            self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))

    @property
    def auth_enabled(self) -> bool:
        return self.tokens.enabled

    def _bearer(self, headers) -> str | None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    def authenticate(self, headers) -> None:
        if not self.tokens.enabled:
            return
        given = (self._bearer(headers) or "").encode()
        ok = False
        for token in self.tokens.current():  # no early exit: time does not depend on which token matched
            ok |= hmac.compare_digest(given, token)
        if not given or not ok:
            raise UnauthorizedError("missing or invalid bearer token")

    def forwarded_client(self, headers) -> str | None:
        """The client address our trusted proxies recorded: the entry ``proxy_hops`` from the
        right of the forwarded-for list (repeated headers count as one list). None when the
        header is not configured or has fewer entries than there are trusted proxies."""
        if not self.forwarded_header:
            return None
        values = headers.getlist(self.forwarded_header) if hasattr(headers, "getlist") else [
            headers.get(self.forwarded_header)]
        entries = [e.strip() for v in values if v for e in v.split(",") if e.strip()]
        if len(entries) < self.proxy_hops:
            return None
        return entries[-self.proxy_hops]

    def client_id(self, headers, peer: str | None) -> str:
        # a bearer token identifies the client only when auth is on (authenticate() ran first);
        # with auth off any header value is the client's free choice and would dodge the limit
        token = self._bearer(headers) if self.tokens.enabled else None
        if token:
            return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        return "ip:" + (self.forwarded_client(headers) or peer or "unknown")

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
