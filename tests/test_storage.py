"""Object storage: LocalStorage on disk and S3Storage against a real SeaweedFS S3 server."""
from __future__ import annotations

import os
import threading

import httpx
import pytest

from serve_app.errors import BadRequestError, ForbiddenSourceError, ObjectNotFoundError, StorageUnavailableError
from serve_app.storage import LocalStorage, S3Storage, S3Weights, content_hash, input_key, result_key, validate_key


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/key", "a/../b", "a//b", "a\x00b", "", "a/./b", "x" * 600])
def test_hostile_keys_are_refused(key):
    with pytest.raises(BadRequestError):
        validate_key(key)


def test_content_hash_keys():
    digest = content_hash(b"abc")
    assert input_key(digest, "png") == f"inputs/{digest}.png"
    assert result_key("Dehaze Former", "ITS/T", digest, "png") == f"results/Dehaze_Former/ITS_T/{digest}.png"


def test_local_storage_roundtrip_and_atomic_writes(tmp_path):
    st = LocalStorage(tmp_path / "store", public_base_url="http://svc:8000")
    st.put("inputs/a.png", b"123", "image/png")
    assert st.get("inputs/a.png") == b"123" and st.exists("inputs/a.png")
    assert not st.exists("inputs/b.png")
    with pytest.raises(ObjectNotFoundError):
        st.get("inputs/b.png")
    # a concurrent reader never sees a partial object: writes go through a temp file + rename
    big = os.urandom(4 << 20)
    seen = []

    def reader():
        for _ in range(200):
            if st.exists("inputs/big.bin"):
                seen.append(len(st.get("inputs/big.bin")))

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(5):
        st.put("inputs/big.bin", big, "application/octet-stream")
    t.join()
    assert all(n == len(big) for n in seen)
    assert not [p for p in (tmp_path / "store" / "inputs").iterdir() if p.name.startswith(".tmp-")]
    # URLs resolve back to keys only for our own objects
    url = st.url("inputs/a.png")
    assert url == "http://svc:8000/v1/objects/inputs/a.png"
    assert st.key_from_url(url) == "inputs/a.png"
    assert st.key_from_url("inputs/a.png") == "inputs/a.png"
    for bad in ["http://evil.example/v1/objects/inputs/a.png", "file:///etc/passwd", "ftp://svc:8000/x",
                "http://svc:8000/etc/passwd", "http://169.254.169.254/latest/meta-data"]:
        with pytest.raises((ForbiddenSourceError, BadRequestError)):
            st.key_from_url(bad)


@pytest.fixture()
def s3(s3_server):
    return S3Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "dehaze-unit")


def test_s3_roundtrip_presigned_url_and_key_from_url(s3):
    assert s3.ping() is None
    s3.put("inputs/x.png", b"\x89PNG-test", "image/png")
    assert s3.exists("inputs/x.png") and s3.get("inputs/x.png") == b"\x89PNG-test"
    assert not s3.exists("inputs/none.png")
    with pytest.raises(ObjectNotFoundError):
        s3.get("inputs/none.png")
    url = s3.url("inputs/x.png")
    assert "X-Amz-Signature" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == b"\x89PNG-test"
    assert s3.key_from_url(url) == "inputs/x.png"
    with pytest.raises(ForbiddenSourceError):
        s3.key_from_url(url.replace("127.0.0.1", "localhost"))
    with pytest.raises(ForbiddenSourceError):
        s3.key_from_url(url.replace("/dehaze-unit/", "/other-bucket/"))


def test_s3_wrong_credentials_and_unreachable(s3_server):
    bad = S3Storage(s3_server.endpoint, s3_server.access_key, "wrong-secret", "dehaze-unit")
    assert bad.ping() is not None
    down = S3Storage("127.0.0.1:9", "a", "b", "dehaze-unit")
    reason = down.ping()
    assert reason and "unreachable" in reason
    with pytest.raises(StorageUnavailableError):
        down.put("inputs/a.png", b"1", "image/png")


def test_s3_weights_root_fetches_into_cache(s3, tmp_path):
    s3.put("zoo/AODNet/dehazer.pth", b"weights-bytes", "application/octet-stream")
    weights = S3Weights(s3, "zoo", tmp_path / "cache")
    assert weights.missing_reason("AODNet/dehazer.pth") is None
    assert "not found" in weights.missing_reason("AODNet/missing.pth")
    local = weights.fetch("AODNet/dehazer.pth")
    assert local.read_bytes() == b"weights-bytes"
    assert local == tmp_path / "cache" / "AODNet" / "dehazer.pth"
