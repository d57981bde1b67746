"""The ingress deployment: FastAPI routes, validation, storage I/O, dispatch to ModelServers.

It decodes and validates every input (bounded bytes and pixels), passes uint8 arrays to the
algorithm's ModelServer (never float tensors), encodes the result and, on request, stores
input and output under content-hash keys. Every error is a typed exception rendered as
``{"error": {"code", "message"}}`` with the status from serve_app/errors.py, including the
framework's own (Starlette's HTTPException: malformed multipart, unknown route, wrong method) and
unexpected ones (500); the legacy routes answer in their ``{code, msg, data}`` envelope instead.
Every guarded route counts its requests and error replies (401 and 429 included) in
``dehaze_requests_total`` / ``dehaze_errors_total`` with a ``route`` tag (serve_app/metrics.py).
"""

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from algorithms.common import quality
from algorithms.errors import DehazeError, WeightsUnavailableError
from algorithms.registry import AlgorithmEntry, VariantEntry, load_registry, variant_unavailable_reason
from serve_app import imaging
from serve_app.errors import (
    BadRequestError,
    InternalError,
    InvalidRequestError,
    ModelFailedError,
    ObjectNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    StorageUnavailableError,
    UnsupportedMediaError,
    error_body,
    error_headers,
    from_http_status,
    from_wire,
    status_of,
)
from serve_app.limits import RequestGuard
from serve_app.metrics import IngressMetrics
from serve_app.settings import settings_with
from serve_app.storage import content_hash, input_key, make_storage, make_weights_store, result_key

logger = logging.getLogger("ray.serve")
WEB_DIR = Path(__file__).resolve().parent / "web"

api = FastAPI(
    title="Dehaze Serve",
    version="0.1.0",
    description="Image dehazing with a zoo of classical and deep algorithms on Ray Serve.",
)


#: routes of the existing Java backend: their errors keep the legacy {code, msg, data} envelope
LEGACY_PATHS = ("/model/prediction", "/model/evaluation")


def _is_legacy(request: Request) -> bool:
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path in LEGACY_PATHS


def _legacy_envelope(data: Any = None, code: int = 200, msg: str = "success") -> dict:
    return {"code": code, "msg": msg, "data": data}


def error_response(request: Request, exc: DehazeError) -> JSONResponse:
    """The one rendering of a typed error: status from serve_app/errors.py, our error schema
    (or the legacy envelope on the legacy routes)."""
    status = status_of(exc)
    body = _legacy_envelope(None, status, exc.message) if _is_legacy(request) else error_body(exc)
    return JSONResponse(body, status_code=status, headers=error_headers(exc))


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


@api.exception_handler(DehazeError)
async def _typed_error(request: Request, exc: DehazeError):
    return error_response(request, exc)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    """The framework's own errors (unknown route, wrong method, malformed multipart outside our
    helpers) in our schema, with their status."""
    return error_response(request, from_http_status(exc.status_code, exc.detail, exc.headers))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    return error_response(request, InvalidRequestError(_validation_message(exc)))


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception):
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, InternalError("internal server error"))


def parse_json(raw: bytes) -> Any:
    """A JSON body, or 400 naming what is wrong with it (never a 500)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, deep nesting
        raise BadRequestError(f"invalid JSON body: {exc}") from exc


def parse_body(model: type[BaseModel], raw: bytes, error: type[DehazeError] = InvalidRequestError,
               prefix: str = "invalid request") -> BaseModel:
    """A JSON body validated as ``model``, or ``error`` naming the first field (or the JSON
    syntax) that is wrong."""
    try:
        return model.model_validate_json(raw)
    except ValueError as exc:  # pydantic's ValidationError (malformed JSON included)
        message = _validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
        raise error(f"{prefix}: {message}") from exc


class StoredInput(BaseModel):
    """JSON body of POST /v1/dehaze/{model}: an object of our storage, by key or by our URL."""

    key: str | None = Field(None, description="object key in the service's storage, e.g. inputs/<sha256>.png")
    url: str | None = Field(None, description="a URL of the service's own storage (presigned or /v1/objects/...)")


class LegacyPrediction(BaseModel):
    modelId: int
    url: str


class LegacyEvaluation(BaseModel):
    modelId: int | None = None
    predUrl: str
    gtUrl: str


@dataclass
class _Call:
    """Metric tags of one request; model and variant are registry names (or "none" / "unknown"),
    never client text, so clients cannot grow the label set."""

    route: str
    model: str = "none"
    variant: str = ""


@dataclass
class DehazeOutcome:
    data: bytes
    media_type: str
    headers: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, model_handles: dict[str, Any], registry_path: str | None = None,
                 settings_overrides: dict[str, Any] | None = None):
        self.settings = settings_with(settings_overrides)
        self.registry = load_registry(registry_path or self.settings.registry_path)
        self.handles = model_handles
        self.storage = make_storage(self.settings)
        self.weights = make_weights_store(self.settings)
        #: (model, variant) -> reason, from loads that failed in a replica (corrupt weights, ...)
        self.load_failures: dict[tuple[str, str], str] = {}
        self._background: set[asyncio.Task] = set()
        self.guard = RequestGuard(self.settings)
        self.metrics = IngressMetrics()
        self.replica = serve.get_replica_context().replica_id.unique_id

    # -- helpers ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _metered(self, call: _Call):
        """Count the request, and its error reply by status, under the call's tags (as they are
        when the request ends: routes fill in the model once they know it)."""
        status = None
        try:
            yield call
        except DehazeError as exc:
            status = status_of(exc)
            raise
        except StarletteHTTPException as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.request(call.model, call.variant, call.route)
            if status is not None:
                self.metrics.error(call.model, call.variant, call.route, status)

    def _model_tags(self, model: str, variant: str | None) -> tuple[str, str]:
        try:
            entry = self.registry.get(model)
        except DehazeError:
            return "unknown", ""
        try:
            return entry.name, entry.variant(variant).name
        except DehazeError:
            return entry.name, "unknown"

    async def _form(self, request: Request, **limits):
        """request.form() with a malformed body (no boundary, broken parts) as a typed 400."""
        try:
            return await request.form(**limits)
        except StarletteHTTPException as exc:
            if exc.status_code == 400:
                raise BadRequestError(f"malformed multipart body: {exc.detail}") from exc
            raise from_http_status(exc.status_code, exc.detail, exc.headers) from exc

    def _entry(self, model: str) -> AlgorithmEntry:
        entry = self.registry.get(model)
        if entry.name not in self.handles:
            from algorithms.errors import UnknownModelError

            raise UnknownModelError(f"model {entry.name!r} is in the registry but not deployed here")
        return entry

    def _unavailable_reason(self, entry: AlgorithmEntry, variant: VariantEntry) -> str | None:
        if (entry.name, variant.name) in self.load_failures:
            return self.load_failures[(entry.name, variant.name)]
        return variant_unavailable_reason(entry, variant, self.weights)

    async def _read_body(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit} bytes")
        chunks: list[bytes] = []

        async def receive_all() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive_all(), timeout=self.settings.body_timeout_s)
        except asyncio.TimeoutError as exc:
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.settings.body_timeout_s:g} s"
            ) from exc
        body = b"".join(chunks)
        request._body = body  # lets request.form()/json() parse the bounded copy
        return body

    async def _image_from_request(self, request: Request) -> tuple[bytes, str | None, bool]:
        """(image bytes, declared content type, came from storage)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = self.settings.max_upload_bytes
        if ctype == "application/json":
            body = await self._read_body(request, self.settings.max_json_bytes)
            ref = parse_body(StoredInput, body, BadRequestError, "invalid JSON body")
            if not (ref.key or ref.url):
                raise BadRequestError("JSON body must name an object: {\"key\": ...} or {\"url\": ...}")
            key = self.storage.key_from_url(ref.url) if ref.url else self.storage.key_from_url(ref.key)
            data = await run_in_threadpool(self.storage.get, key, limit)
            return data, None, True
        body = await self._read_body(request, limit + 64 * 1024 if ctype.startswith("multipart/") else limit)
        if ctype.startswith("multipart/"):
            form = await self._form(request, max_files=4, max_fields=16, max_part_size=limit)
            upload = form.get("image") or form.get("file") or next(
                (v for v in form.values() if hasattr(v, "read")), None
            )
            if upload is None or not hasattr(upload, "read"):
                raise BadRequestError("multipart body has no file part (use the field name 'image')")
            data = await upload.read()
            if len(data) > limit:
                raise PayloadTooLargeError(f"image is {len(data)} bytes; the limit is {limit} bytes")
            return data, upload.content_type, False
        return body, ctype or None, False

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _put_quietly(self, key: str, data: bytes, media_type: str) -> None:
        try:
            await run_in_threadpool(self.storage.put, key, data, media_type)
        except DehazeError as exc:
            logger.warning("could not cache %s: %s", key, exc.message)

    async def _infer(self, entry: AlgorithmEntry, variant: VariantEntry, array):
        handle = self.handles[entry.name].options(multiplexed_model_id=variant.name)
        try:
            reply = await handle.dehaze.remote(array)
        except Exception as exc:  # noqa: BLE001 - Ray's own errors are mapped here
            from ray.serve.exceptions import BackPressureError

            if isinstance(exc, BackPressureError):
                raise OverloadedError(f"model {entry.name} is saturated; retry shortly") from exc
            logger.exception("model %s/%s call failed", entry.name, variant.name)
            raise ModelFailedError(f"model {entry.name} failed ({type(exc).__name__}); retry shortly") from exc
        if "error" in reply:
            err = from_wire(reply["error"])
            if isinstance(err, WeightsUnavailableError):
                self.load_failures[(entry.name, variant.name)] = err.message
            raise err
        return reply

    async def run_dehaze(self, entry: AlgorithmEntry, variant: VariantEntry, data: bytes,
                         declared_type: str | None, fmt: str, store: bool) -> DehazeOutcome:
        media_type = imaging.MEDIA_TYPES[fmt]
        digest = content_hash(data)
        rkey = result_key(entry.name, variant.name, digest, fmt)
        headers = {"X-Model": entry.name, "X-Variant": variant.name, "X-Input-SHA256": digest,
                   "X-Replica": self.replica}
        timings: dict[str, float] = {}
        cached: bytes | None = None
        try:
            if await run_in_threadpool(self.storage.exists, rkey):
                cached = await run_in_threadpool(self.storage.get, rkey)
        except StorageUnavailableError:
            if store:
                raise
            logger.warning("storage unavailable: serving %s without the result cache", entry.name)
        if cached is not None:
            out = cached
            headers["X-Cache"] = "hit"  # these exact bytes were validated when the result was made
            fmt_in = imaging.sniff_format(data) or "bin"
            notes = await run_in_threadpool(imaging.input_notes, data)
            if notes:
                headers["X-Input-Notes"] = "; ".join(notes)
        else:
            t0 = time.perf_counter()
            decoded = await run_in_threadpool(
                imaging.decode_image, data, self.settings.max_upload_bytes, self.settings.max_pixels, declared_type
            )
            timings["decode"] = (time.perf_counter() - t0) * 1e3
            fmt_in = decoded.format
            if decoded.notes:
                headers["X-Input-Notes"] = "; ".join(decoded.notes)
            reason = self._unavailable_reason(entry, variant)
            if reason:
                raise WeightsUnavailableError(f"{entry.name}/{variant.name} is unavailable: {reason}")
            t1 = time.perf_counter()
            reply = await self._infer(entry, variant, decoded.array)
            timings["model"] = (time.perf_counter() - t1) * 1e3
            timings.update({k.removesuffix("_ms"): v for k, v in reply["timings"].items()})
            t2 = time.perf_counter()
            out = await run_in_threadpool(imaging.encode_image, reply["image"], fmt, self.settings.jpeg_quality)
            timings["encode"] = (time.perf_counter() - t2) * 1e3
            headers["X-Cache"] = "miss"
            headers["X-Device"] = str(reply.get("device", ""))
            headers["X-Batch-Size"] = str(reply.get("batch_size", 1))
            if store:
                await run_in_threadpool(self.storage.put, rkey, out, media_type)
            else:
                self._spawn(self._put_quietly(rkey, out, media_type))
        keys = {}
        if store:
            ext = fmt_in.lower().replace("jpeg", "jpg")
            ikey = input_key(digest, ext)
            if not await run_in_threadpool(self.storage.exists, ikey):
                media_in = imaging.MEDIA_TYPES.get(fmt_in.lower(), "application/octet-stream")
                await run_in_threadpool(self.storage.put, ikey, data, media_in)
            keys = {"input_key": ikey, "result_key": rkey}
        if cached is not None:
            self.metrics.cache_hits.inc(tags={"model": entry.name, "variant": variant.name})
        else:
            h, w = decoded.array.shape[:2]
            self.metrics.megapixels.observe(h * w / 1e6, tags={"model": entry.name, "variant": variant.name})
            if "model" in timings:
                replica = timings.get("load", 0.0) + timings.get("inference", 0.0)
                timings["queue"] = max(0.0, timings["model"] - replica)
        self.metrics.stages(entry.name, variant.name, {k: v for k, v in timings.items() if k != "model"})
        headers["Server-Timing"] = ", ".join(f"{k};dur={v:.1f}" for k, v in timings.items())
        for k, v in timings.items():
            headers[f"X-Timing-{k.capitalize()}-Ms"] = f"{v:.1f}"
        return DehazeOutcome(out, media_type, headers, keys)

    # -- routes ----------------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    async def index(self):
        return await self.static("index.html")

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str):
        """The demo page's static files (serve_app/web/), no build step."""
        path = (WEB_DIR / name).resolve()
        if path.parent != WEB_DIR or not path.is_file():
            raise ObjectNotFoundError(f"no static file {name!r}")
        media = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
        return Response(path.read_bytes(), media_type=media.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})

    @api.get("/healthz", summary="Liveness: the process answers")
    async def healthz(self):
        return {"status": "ok"}

    @api.get("/readyz", summary="Readiness: registry loaded and storage reachable")
    async def readyz(self):
        reason = await run_in_threadpool(self.storage.ping)
        body = {"ready": reason is None, "registry": len(self.registry.algorithms),
                "storage": self.storage.describe(), "storage_error": reason}
        return JSONResponse(body, status_code=200 if reason is None else 503)

    @api.get("/v1/models", summary="Algorithms, variants and their availability")
    async def models(self, request: Request):
        with self._metered(_Call("models")):
            self.guard.authenticate(request.headers)
            return await self._models()

    async def _models(self) -> dict:
        out = []
        for entry in self.registry.algorithms:
            if entry.name not in self.handles:
                continue
            variants = []
            for v in entry.variants:
                reason = await run_in_threadpool(self._unavailable_reason, entry, v)
                variants.append({
                    "name": v.name, "type": v.type, "description": v.description, "arch": v.arch or entry.arch,
                    "path": v.path, "id": v.id, "available": reason is None, "reason": reason,
                    "params": {**entry.params, **v.params},
                })
            out.append({"name": entry.name, "type": entry.type, "description": entry.description,
                        "paper": entry.paper, "id": entry.id, "default_variant": entry.variants[0].name,
                        "variants": variants})
        return {"models": out, "device": self.settings.device}

    @api.post(
        "/v1/dehaze/{model}",
        summary="Dehaze one image",
        description="Body: the image bytes (any image Content-Type), multipart with an 'image' file, or JSON "
        "{\"key\"|\"url\"} naming an object of our storage. Returns the image (PNG default; JPEG/WebP by Accept "
        "or ?format=), or with ?store=true (default for JSON bodies) JSON with object keys and URLs.",
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "application/json": {}}}},
    )
    async def dehaze(self, model: str, request: Request, variant: str | None = Query(None),
                     format: str | None = Query(None, description="png, jpeg or webp"),
                     store: bool | None = Query(None, description="store input and result, reply with keys and URLs")):
        with self._metered(_Call("dehaze", *self._model_tags(model, variant))):
            limit_headers = self.guard(request)  # 401 / 429 are counted like every other error
            entry = self._entry(model)
            child = entry.variant(variant)
            fmt = imaging.negotiate_format(format, request.headers.get("accept"))
            data, declared, from_storage = await self._image_from_request(request)
            store = from_storage if store is None else store
            outcome = await self.run_dehaze(entry, child, data, declared, fmt, store)
            outcome.headers.update(limit_headers)
            if store:
                urls = {k.replace("_key", "_url"): await run_in_threadpool(self.storage.url, v)
                        for k, v in outcome.keys.items()}
                return JSONResponse({"model": entry.name, "variant": child.name, **outcome.keys, **urls},
                                    headers=outcome.headers)
            return Response(outcome.data, media_type=outcome.media_type, headers=outcome.headers)

    @api.get("/v1/objects/{key:path}", summary="Read an object of the local storage")
    async def get_object(self, key: str, request: Request):
        with self._metered(_Call("objects")):
            self.guard(request)
            data = await run_in_threadpool(self.storage.get, key)
        media = imaging.MEDIA_TYPES.get(key.rsplit(".", 1)[-1].replace("jpg", "jpeg"), "application/octet-stream")
        # stored inputs are the client's bytes: never let a browser sniff or run them
        return Response(data, media_type=media, headers={
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline"})

    @api.post("/v1/evaluate", summary="PSNR/SSIM against a ground truth, and no-reference haze scores")
    async def evaluate(self, request: Request):
        with self._metered(_Call("evaluate")):
            self.guard(request)
            return await self._evaluate(request)

    async def _evaluate(self, request: Request) -> dict:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = self.settings.max_upload_bytes
        pred_type = ref_type = None
        if ctype.startswith("multipart/"):
            await self._read_body(request, 2 * limit + 64 * 1024)
            form = await self._form(request, max_files=2, max_fields=8, max_part_size=limit)
            if not hasattr(form.get("image"), "read"):
                raise BadRequestError("multipart body needs an 'image' file (and optionally 'reference')")
            pred, pred_type = await form["image"].read(), form["image"].content_type
            ref = None
            if hasattr(form.get("reference"), "read"):
                ref, ref_type = await form["reference"].read(), form["reference"].content_type
        elif ctype == "application/json":
            body = parse_json(await self._read_body(request, self.settings.max_json_bytes) or b"{}")
            if not isinstance(body, dict) or "image" not in body:
                raise BadRequestError("JSON body needs 'image' (an object key or our URL), optionally 'reference'")
            for name in ("image", "reference"):
                if body.get(name) is not None and not isinstance(body[name], str):
                    raise BadRequestError(f"JSON field {name!r} must be a string: an object key or our URL")
            pred = await run_in_threadpool(self.storage.get, self.storage.key_from_url(body["image"]), limit)
            ref = (await run_in_threadpool(self.storage.get, self.storage.key_from_url(body["reference"]), limit)
                   if body.get("reference") else None)
        else:
            raise UnsupportedMediaError("send multipart/form-data (image, reference) or JSON with object keys")
        return await run_in_threadpool(self._scores, pred, ref, pred_type, ref_type)

    def _scores(self, pred_bytes: bytes, ref_bytes: bytes | None, pred_type: str | None = None,
                ref_type: str | None = None) -> dict:
        """Scores of decoded images; declared types (multipart parts) must agree with the data."""
        s = self.settings
        pred = imaging.decode_image(pred_bytes, s.max_upload_bytes, s.max_pixels, pred_type).array
        out: dict[str, Any] = {"haze_score": quality.haze_score(pred)}
        if ref_bytes is not None:
            ref = imaging.decode_image(ref_bytes, s.max_upload_bytes, s.max_pixels, ref_type).array
            if ref.shape != pred.shape:
                raise BadRequestError(f"image is {pred.shape[1]}x{pred.shape[0]} but the reference is "
                                      f"{ref.shape[1]}x{ref.shape[0]}")
            out.update(psnr=quality.psnr(pred, ref), ssim=quality.ssim(pred, ref),
                       reference_haze_score=quality.haze_score(ref))
        return out

    # -- legacy routes (the existing Java backend) ------------------------------------------
    @api.post("/model/prediction", summary="Legacy: dehaze a stored image by legacy modelId")
    async def legacy_prediction(self, request: Request):
        call = _Call("legacy_prediction")
        with self._metered(call):
            self.guard(request)
            body = parse_body(LegacyPrediction, await self._read_body(request, self.settings.max_json_bytes))
            entry, child = self.registry.by_legacy_id(body.modelId)
            call.model, call.variant = entry.name, child.name
            self._entry(entry.name)
            key = self.storage.key_from_url(body.url)
            data = await run_in_threadpool(self.storage.get, key, self.settings.max_upload_bytes)
            outcome = await self.run_dehaze(entry, child, data, None, "png", store=True)
            pred_url = await run_in_threadpool(self.storage.url, outcome.keys["result_key"])
            haze_url = await run_in_threadpool(self.storage.url, outcome.keys["input_key"])
            return _legacy_envelope({"predUrl": pred_url, "hazeUrl": haze_url})

    @api.post("/model/evaluation", summary="Legacy: PSNR/SSIM of a stored prediction against a ground truth")
    async def legacy_evaluation(self, request: Request):
        call = _Call("legacy_evaluation")
        with self._metered(call):
            self.guard(request)
            body = parse_body(LegacyEvaluation, await self._read_body(request, self.settings.max_json_bytes))
            if body.modelId is not None:
                entry, child = self.registry.by_legacy_id(body.modelId)
                call.model, call.variant = entry.name, child.name
            limit = self.settings.max_upload_bytes
            pred = await run_in_threadpool(self.storage.get, self.storage.key_from_url(body.predUrl), limit)
            ref = await run_in_threadpool(self.storage.get, self.storage.key_from_url(body.gtUrl), limit)
            scores = await run_in_threadpool(self._scores, pred, ref)
            return _legacy_envelope([
                {"id": 1, "label": "PSNR", "value": round(scores["psnr"], 4), "better": "higher"},
                {"id": 2, "label": "SSIM", "value": round(scores["ssim"], 4), "better": "higher"},
            ])
