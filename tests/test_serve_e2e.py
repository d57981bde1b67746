"""The whole service path on a local Ray cluster: HTTP -> Serve proxy -> Ingress -> ModelServer,
with S3 storage on a real SeaweedFS server. No mocks."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

REGISTRY = """
- name: DCP
  type: prior
  description: dark channel prior
  importPath: algorithms.dcp
  id: 13
  children:
    - {name: default, type: prior, description: defaults}
    - {name: mild, type: prior, description: omega 0.85, params: {omega: 0.85}, id: 9013}
- name: CAP
  type: prior
  description: colour attenuation prior
  importPath: algorithms.cap
- name: NoWeights
  type: cnn
  description: a variant whose weights file is absent from the weights root
  importPath: algorithms.dcp
  children:
    - {name: ITS, type: indoor, description: missing, path: NoWeights/ITS/model.pth}
"""
MAX_BYTES = 3_000_000
MAX_PIXELS = 4_000_000


@pytest.fixture(scope="module")
def service(ray_serve, s3_server, tmp_path_factory):
    from ray import serve

    from tests.conftest import deploy

    root = tmp_path_factory.mktemp("e2e")
    (root / "models.yaml").write_text(REGISTRY)
    (root / "weights").mkdir()
    settings = {**s3_server.settings("dehaze-e2e"), "weights_root": str(root / "weights"),
                "max_upload_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS}
    deploy({"registry_path": str(root / "models.yaml"), "settings": settings, "profile": "cpu",
            "models": ["DCP", "CAP", "NoWeights"]}, "e2e", "/")
    with httpx.Client(base_url=ray_serve.url, timeout=120) as client:
        yield client
    serve.delete("e2e")


@pytest.fixture(scope="module")
def hazy_png(shared_dir) -> bytes:
    return (shared_dir / "data" / "sots-indoor" / "hazy" / "1400_5.png").read_bytes()


def _png(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels (its data would inflate to gigabytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 1024 * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _assert_healthy(service):
    assert service.get("/healthz").json() == {"status": "ok"}


def test_health_ready_docs(service):
    _assert_healthy(service)
    ready = service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert service.get("/openapi.json").json()["info"]["title"] == "Dehaze Serve"
    assert service.get("/docs").status_code == 200


def test_models_lists_variants_and_availability(service):
    models = {m["name"]: m for m in service.get("/v1/models").json()["models"]}
    assert set(models) == {"DCP", "CAP", "NoWeights"}
    dcp = {v["name"]: v for v in models["DCP"]["variants"]}
    assert dcp["default"]["available"] and dcp["mild"]["params"]["omega"] == 0.85
    nw = models["NoWeights"]["variants"][0]
    assert nw["available"] is False and "NoWeights/ITS/model.pth" in nw["reason"]


def test_dehaze_raw_body_returns_png_with_timings(service, hazy_png):
    r = service.post("/v1/dehaze/DCP", content=hazy_png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    out, inp = _decode(r.content), _decode(hazy_png)
    assert out.shape == inp.shape and np.abs(out.astype(int) - inp).mean() > 5
    assert r.headers["x-model"] == "DCP" and r.headers["x-variant"] == "default"
    assert "server-timing" in r.headers


def test_variants_formats_and_multipart(service, hazy_png):
    mild = service.post("/v1/dehaze/DCP?variant=mild", content=hazy_png)
    default = service.post("/v1/dehaze/DCP", content=hazy_png)
    assert mild.status_code == 200 and mild.headers["x-variant"] == "mild"
    assert not np.array_equal(_decode(mild.content), _decode(default.content))
    jpeg = service.post("/v1/dehaze/CAP", content=hazy_png, headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:3] == b"\xff\xd8\xff"
    webp = service.post("/v1/dehaze/CAP?format=webp", files={"image": ("h.png", hazy_png, "image/png")})
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"


def test_store_returns_presigned_urls_and_repeats_hit_the_cache(service, hazy_png, s3_server):
    digest = hashlib.sha256(hazy_png).hexdigest()
    first = service.post("/v1/dehaze/DCP?store=true&variant=mild", content=hazy_png)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["input_key"] == f"inputs/{digest}.png"
    assert body["result_key"] == f"results/DCP/mild/{digest}.png"
    fetched = httpx.get(body["result_url"])  # presigned URL straight from the S3 server
    assert fetched.status_code == 200 and _decode(fetched.content).shape == _decode(hazy_png).shape
    assert httpx.get(body["input_url"]).content == hazy_png
    again = service.post("/v1/dehaze/DCP?variant=mild", content=hazy_png)
    assert again.headers["x-cache"] == "hit" and "model" not in again.headers["server-timing"]
    assert again.content == fetched.content
    by_key = service.post("/v1/dehaze/DCP?variant=mild", json={"key": body["input_key"]})
    assert by_key.status_code == 200 and by_key.json()["result_key"] == body["result_key"]


def test_legacy_prediction_and_evaluation(service, hazy_png, shared_dir):
    stored = service.post("/v1/dehaze/DCP?store=true", content=hazy_png).json()
    r = service.post("/model/prediction", json={"modelId": 13, "url": stored["input_url"]})
    assert r.status_code == 200, r.text
    env = r.json()
    assert env["code"] == 200 and set(env["data"]) == {"predUrl", "hazeUrl"}
    assert httpx.get(env["data"]["predUrl"]).status_code == 200
    gt = (shared_dir / "data" / "sots-indoor" / "gt" / "1400.png").read_bytes()
    gt_key = service.post("/v1/dehaze/CAP?store=true", content=gt).json()["input_key"]
    ev = service.post("/model/evaluation", json={"modelId": 13, "predUrl": env["data"]["predUrl"], "gtUrl": gt_key})
    assert ev.status_code == 200, ev.text
    rows = {row["label"]: row for row in ev.json()["data"]}
    assert rows["PSNR"]["value"] > 14 and 0 < rows["SSIM"]["value"] <= 1 and rows["PSNR"]["better"] == "higher"
    # a legacy modelId of a variant row works too
    assert service.post("/model/prediction", json={"modelId": 9013, "url": stored["input_key"]}).json()["code"] == 200


def test_evaluate_endpoint(service, hazy_png, shared_dir):
    gt = (shared_dir / "data" / "sots-indoor" / "gt" / "1400.png").read_bytes()
    r = service.post("/v1/evaluate", files={"image": ("p.png", hazy_png, "image/png"),
                                            "reference": ("g.png", gt, "image/png")})
    assert r.status_code == 200, r.text
    s = r.json()
    assert 5 < s["psnr"] < 30 and 0 < s["ssim"] < 1 and s["haze_score"] > s["reference_haze_score"]


@pytest.mark.parametrize(
    "path, kwargs, status, code",
    [
        ("/v1/dehaze/NoSuchModel", {"content": b"x"}, 404, "unknown_model"),
        ("/v1/dehaze/DCP?variant=nope", {"content": b"x"}, 404, "unknown_variant"),
        ("/v1/dehaze/DCP", {"content": b""}, 422, "invalid_image"),
        ("/v1/dehaze/DCP", {"content": b"this is not an image at all"}, 415, "unsupported_media_type"),
        ("/v1/dehaze/DCP", {"content": b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64}, 415, "unsupported_media_type"),
        ("/v1/dehaze/DCP", {"content": b"\x00\x00\x00\x18ftypavif" + b"\x00" * 64}, 415, "unsupported_media_type"),
        ("/v1/dehaze/DCP", {"content": b"\x00" * (MAX_BYTES + 1)}, 413, "payload_too_large"),
        ("/v1/dehaze/DCP", {"content": "bomb"}, 413, "payload_too_large"),
        ("/v1/dehaze/DCP", {"content": "tiny"}, 422, "invalid_image"),
        ("/v1/dehaze/DCP", {"content": "truncated"}, 422, "invalid_image"),
        ("/v1/dehaze/DCP", {"content": "mismatch"}, 415, "unsupported_media_type"),
        ("/v1/dehaze/DCP?format=tiff", {"content": "ok"}, 415, "unsupported_media_type"),
        ("/v1/dehaze/NoWeights", {"content": "ok"}, 503, "weights_unavailable"),
        ("/v1/dehaze/DCP", {"json": {"key": "../../etc/passwd"}}, 400, "bad_request"),
        ("/v1/dehaze/DCP", {"json": {"url": "http://example.com/x.png"}}, 400, "forbidden_source"),
        ("/v1/dehaze/DCP", {"json": {"key": "inputs/none.png"}}, 404, "object_not_found"),
        ("/v1/dehaze/DCP", {"json": {}}, 400, "bad_request"),
    ],
)
def test_errors_are_clean_json_and_the_service_stays_healthy(service, path, kwargs, status, code):
    special = {
        "bomb": lambda: _bomb_png(30000, 30000),
        "tiny": lambda: _png(8, 8),
        "truncated": lambda: _png(64, 64)[:200],
        "ok": lambda: _png(64, 64),
    }
    headers = {}
    if kwargs.get("content") == "mismatch":
        kwargs = {"content": _png(32, 32)}
        headers["Content-Type"] = "image/jpeg"
    elif isinstance(kwargs.get("content"), str):
        kwargs = {"content": special[kwargs["content"]]()}
    r = service.post(path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "Traceback" not in r.text
    if status == 503:
        assert "NoWeights/ITS/model.pth" in err["message"]
    _assert_healthy(service)


def test_legacy_routes_refuse_foreign_urls(service):
    for url in ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "gopher://x/y",
                "http://10.0.0.1/inputs/a.png"]:
        r = service.post("/model/prediction", json={"modelId": 13, "url": url})
        assert r.status_code == 400 and r.json()["code"] == 400, r.text
    r = service.post("/model/prediction", json={"modelId": 99999, "url": "inputs/x.png"})
    assert r.status_code == 404 and r.json()["data"] is None
    r = service.post("/model/prediction", content=b"{not json")
    assert r.status_code == 422


def test_service_still_serves_after_errors(service):
    r = service.post("/v1/dehaze/CAP", content=_png(48, 40, seed=3))
    assert r.status_code == 200 and _decode(r.content).shape == (40, 48, 3)
