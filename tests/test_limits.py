"""serve_app/limits.py without a cluster: bearer tokens re-read from a rotated tokens file, and
the rate-limit identity behind trusted proxies (X-Forwarded-For spoofing). tests/test_ops.py runs
the same paths through a real Ray Serve proxy."""
from __future__ import annotations

import os

import pytest
from starlette.datastructures import Headers

from serve_app.errors import RateLimitedError, UnauthorizedError
from serve_app.limits import RequestGuard
from serve_app.settings import Settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> Headers:
    return Headers({"authorization": f"Bearer {token}"})


def accepted(guard: RequestGuard, token: str) -> bool:
    try:
        guard.authenticate(bearer(token))
        return True
    except UnauthorizedError:
        return False


def test_rewritten_tokens_file_rotates_tokens(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\nold-token-1\n\nshared-token\n")
    clock = Clock()
    guard = RequestGuard(Settings(auth_tokens_file=str(tokens), auth_tokens_check_s=5), clock)
    assert accepted(guard, "old-token-1") and accepted(guard, "shared-token")
    assert not accepted(guard, "new-token-2") and not accepted(guard, "# comment")

    tokens.write_text("new-token-2\nshared-token\n")  # rewritten in place
    clock.now += 1  # within the check interval: no stat yet, the old set still holds
    assert accepted(guard, "old-token-1")
    clock.now += 5
    assert not accepted(guard, "old-token-1")
    assert accepted(guard, "new-token-2") and accepted(guard, "shared-token")


def test_secret_volume_swap_rotates_tokens(tmp_path):
    """A Kubernetes Secret volume: tokens -> ..data/tokens, ..data a symlink swapped atomically."""
    first, second = tmp_path / "..2024_01", tmp_path / "..2024_02"
    first.mkdir()
    second.mkdir()
    (first / "tokens").write_text("alpha\n")
    (second / "tokens").write_text("bravo\n")
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/tokens", tmp_path / "tokens")
    clock = Clock()
    guard = RequestGuard(Settings(auth_tokens_file=str(tmp_path / "tokens"), auth_tokens_check_s=2), clock)
    assert accepted(guard, "alpha") and not accepted(guard, "bravo")
    os.symlink(second.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.now += 2
    assert accepted(guard, "bravo") and not accepted(guard, "alpha")


def test_env_tokens_stay_and_an_emptied_file_refuses_everything(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("file-token\n")
    clock = Clock()
    guard = RequestGuard(Settings(auth_tokens="env-token", auth_tokens_file=str(tokens), auth_tokens_check_s=0),
                         clock)
    assert accepted(guard, "file-token") and accepted(guard, "env-token")
    tokens.write_text("")
    assert not accepted(guard, "file-token") and accepted(guard, "env-token")
    only_file = RequestGuard(Settings(auth_tokens_file=str(tokens), auth_tokens_check_s=0), clock)
    assert only_file.auth_enabled  # an empty tokens file does not turn auth off
    assert not accepted(only_file, "") and not accepted(only_file, "anything")


def test_a_vanished_file_keeps_the_tokens_read_last(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("kept\n")
    guard = RequestGuard(Settings(auth_tokens_file=str(tokens), auth_tokens_check_s=0), Clock())
    tokens.unlink()
    assert accepted(guard, "kept")
    tokens.write_text("back\n")
    assert accepted(guard, "back") and not accepted(guard, "kept")


def test_missing_tokens_file_at_start_is_an_error(tmp_path):
    with pytest.raises(OSError):
        RequestGuard(Settings(auth_tokens_file=str(tmp_path / "absent")))


def _xff(*values: str) -> Headers:
    return Headers(raw=[(b"x-forwarded-for", v.encode()) for v in values])


def test_forwarded_for_uses_the_entry_our_proxy_appended():
    guard = RequestGuard(Settings(client_ip_header="X-Forwarded-For"))
    a = guard.client_id(_xff("198.51.100.1, 203.0.113.7"), "10.0.0.2")
    b = guard.client_id(_xff("spoofed, 203.0.113.7"), "10.0.0.2")
    assert a == b == "ip:203.0.113.7"
    assert guard.client_id(_xff("198.51.100.1, 203.0.113.8"), "10.0.0.2") == "ip:203.0.113.8"
    # repeated headers are one list; the last value is the proxy's
    assert guard.client_id(_xff("spoofed", "203.0.113.9"), "10.0.0.2") == "ip:203.0.113.9"
    # no header: the peer
    assert guard.client_id(Headers({}), "10.0.0.2") == "ip:10.0.0.2"


def test_forwarded_for_with_two_trusted_hops():
    guard = RequestGuard(Settings(client_ip_header="X-Forwarded-For", trusted_proxy_hops=2))
    # client -> edge proxy (appends the client) -> inner proxy (appends the edge) -> us
    assert guard.client_id(_xff("spoofed, 203.0.113.7, 10.1.0.1"), "10.0.0.2") == "ip:203.0.113.7"
    assert guard.client_id(_xff("other, 203.0.113.7, 10.1.0.1"), "10.0.0.2") == "ip:203.0.113.7"
    # fewer entries than trusted proxies: not written by them, so the peer address counts
    assert guard.client_id(_xff("203.0.113.7"), "10.0.0.2") == "ip:10.0.0.2"


def test_forwarded_header_ignored_unless_configured():
    guard = RequestGuard(Settings())
    assert guard.client_id(_xff("spoofed, 203.0.113.7"), "10.0.0.2") == "ip:10.0.0.2"


def test_client_chosen_keys_do_not_pick_a_bucket_when_auth_is_off():
    guard = RequestGuard(Settings())
    ids = {guard.client_id(Headers(h), "10.0.0.2") for h in
           ({"authorization": "Bearer one"}, {"authorization": "Bearer two"}, {"x-api-key": "three"}, {})}
    assert ids == {"ip:10.0.0.2"}
    with_auth = RequestGuard(Settings(auth_tokens="one,two"))
    assert with_auth.client_id(bearer("one"), "10.0.0.2") != with_auth.client_id(bearer("two"), "10.0.0.2")


def test_spoofed_forwarded_for_shares_one_limit():
    guard = RequestGuard(Settings(client_ip_header="X-Forwarded-For", rate_limit="2/minute"))
    guard.check_rate(_xff("spoof-1, 203.0.113.50"), "10.0.0.2")
    guard.check_rate(_xff("spoof-2, 203.0.113.50"), "10.0.0.2")
    with pytest.raises(RateLimitedError):
        guard.check_rate(_xff("spoof-3, 203.0.113.50"), "10.0.0.2")
    guard.check_rate(_xff("spoof-1, 203.0.113.51"), "10.0.0.2")  # another client: its own budget
