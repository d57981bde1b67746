"""Decoding untrusted image bytes into uint8 RGB arrays, and encoding results.

Decoding is bounded before any pixel is decompressed: the byte size is checked first, then
the dimensions declared in the header against ``max_pixels`` (decompression bombs never
allocate). EXIF orientation is applied and metadata dropped; animated images give their first
frame (reported in ``DecodedImage.notes``).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from algorithms.base import MIN_SIDE
from algorithms.errors import InvalidImageError
from serve_app.errors import PayloadTooLargeError, UnsupportedMediaError

# We enforce our own pixel limit before decoding; Pillow's global guard would only warn.
Image.MAX_IMAGE_PIXELS = None

SUPPORTED = {"PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_DECLARED = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP",
    "image/bmp": "BMP", "image/tiff": "TIFF", "image/gif": "GIF", "image/x-portable-pixmap": "PPM",
}


@dataclass
class DecodedImage:
    array: np.ndarray  # uint8 H x W x 3 RGB
    format: str
    notes: list[str] = field(default_factory=list)


def sniff_format(data: bytes) -> str | None:
    """Name of the container format from its magic bytes (also for formats we do not decode)."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "ISO-BMFF"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head.startswith((b"P6", b"P3")):
        return "PPM"
    return None


# Active content that must never ride inside an "image" (polyglot files). Markup signatures are
# long enough (>= 6 bytes, matched case-insensitively) that compressed pixel data practically
# never contains them by chance; a ZIP archive appended to an image ends with its
# end-of-central-directory record, looked for in the last 64 KiB only.
_MARKUP = {b"<script": "HTML/JavaScript", b"<html>": "HTML", b"<html ": "HTML", b"<!doctype html": "HTML",
           b"<?php": "PHP", b"%pdf-1.": "PDF"}
_ZIP_END = b"PK\x05\x06"


def find_polyglot(data: bytes) -> str | None:
    """What active content is embedded in the bytes besides the image, else None."""
    lowered = data.lower()
    for sig, what in _MARKUP.items():
        if sig in lowered:
            return what
    if _ZIP_END in data[-(64 * 1024 + 22):]:
        return "a ZIP archive"
    return None


def webp_declared_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size declared by a WebP header (VP8X, VP8L or VP8), read without decoding."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind, body = data[12:16], data[20:]
    if kind == b"VP8X" and len(body) >= 10:
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
    return None


def decode_image(
    data: bytes,
    max_bytes: int,
    max_pixels: int,
    declared_type: str | None = None,
) -> DecodedImage:
    """Untrusted bytes -> validated uint8 RGB array, or a typed 413/415/422 error."""
    if len(data) == 0:
        raise InvalidImageError("the request body is empty: send the image bytes")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"image is {len(data)} bytes; the limit is {max_bytes} bytes")
    sniffed = sniff_format(data)
    if sniffed is not None and sniffed not in SUPPORTED:
        raise UnsupportedMediaError(
            f"{sniffed} images are not supported; send PNG, JPEG, WebP, BMP, TIFF or GIF"
        )
    declared_size = webp_declared_size(data) if sniffed == "WEBP" else None
    if declared_size and declared_size[0] * declared_size[1] > max_pixels:
        w, h = declared_size
        raise PayloadTooLargeError(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels")
    embedded = find_polyglot(data)
    if embedded:
        raise UnsupportedMediaError(f"the file is a polyglot: besides image data it contains {embedded}")
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared.startswith("image/") and sniffed and _DECLARED.get(declared, sniffed) != sniffed:
        raise UnsupportedMediaError(f"Content-Type says {declared} but the data is a {sniffed} image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or sniffed or "unknown"
            if fmt not in SUPPORTED:
                raise UnsupportedMediaError(f"{fmt} images are not supported")
            w, h = img.size
            if w * h > max_pixels:
                raise PayloadTooLargeError(
                    f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels"
                )
            if min(w, h) < MIN_SIDE:
                raise InvalidImageError(f"image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")
            notes = []
            if getattr(img, "n_frames", 1) > 1:
                notes.append(f"animated {fmt} with {img.n_frames} frames: first frame used")
                img.seek(0)
            fast = _decode_plain_jpeg(data, img)
            if fast is not None:
                return DecodedImage(fast, fmt, notes)
            img.load()
            array = _to_rgb(img)
            oriented = ImageOps.exif_transpose(img) if _has_orientation(img) else None
            if oriented is not None:
                array = _to_rgb(oriented)
                notes.append("EXIF orientation applied")
    except (PayloadTooLargeError, UnsupportedMediaError, InvalidImageError):
        raise
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(
            "the data is not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF, GIF)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidImageError(f"the image is truncated or corrupt ({exc})") from exc
    return DecodedImage(np.ascontiguousarray(array), fmt, notes)


def _decode_plain_jpeg(data: bytes, img: Image.Image) -> np.ndarray | None:
    """OpenCV's decoder (same pixels as Pillow's, about twice as fast) for the common case only:
    a baseline/progressive RGB or grayscale JPEG that ends in its EOI marker (so it is not
    truncated: libjpeg would fill a truncated file with grey instead of failing) and has no EXIF
    orientation. Everything else (CMYK, orientation, trailing bytes, odd files) goes to Pillow."""
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or not data.endswith(b"\xff\xd9") or _has_orientation(img):
        return None
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None or array.shape[:2] != (img.size[1], img.size[0]):
        return None
    return array


def input_notes(data: bytes) -> list[str]:
    """The notes decode_image would give (animation, EXIF orientation), from headers only: for
    inputs whose result is already cached and that are therefore not decoded again."""
    try:
        img = Image.open(io.BytesIO(data))
        notes = []
        if getattr(img, "n_frames", 1) > 1:
            notes.append(f"animated {img.format} with {img.n_frames} frames: first frame used")
        if _has_orientation(img):
            notes.append("EXIF orientation applied")
        return notes
    except Exception:  # noqa: BLE001 - these bytes were validated when the result was made
        return []


def _has_orientation(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, not fatal
        return False


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 RGB (16-bit scaled, not clipped; alpha dropped)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img)
        a = (a.astype(np.uint32) >> 8).astype(np.uint8) if a.max(initial=0) > 255 else a.astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(img), 0, 1) * 255
        return np.repeat(a.round().astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def encode_image(array: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> bytes:
    """uint8 RGB -> encoded bytes (OpenCV encoders: PNG, JPEG, WebP)."""
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        # zlib level 1 with the RLE strategy (after PNG's row filters): about 2x faster than
        # level 3 and no larger on photographs (benchmarks/codecs.py)
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                             cv2.IMWRITE_PNG_STRATEGY_RLE])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    elif fmt == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, jpeg_quality])
    else:
        raise UnsupportedMediaError(f"output format {fmt!r} is not supported (png, jpeg, webp)")
    if not ok:
        raise RuntimeError(f"encoding {fmt} failed")
    return buf.tobytes()


def negotiate_format(query_format: str | None, accept: str | None) -> str:
    """?format= wins; else the first supported type in Accept; else PNG."""
    if query_format:
        f = query_format.lower()
        f = "jpeg" if f == "jpg" else f
        if f not in MEDIA_TYPES:
            raise UnsupportedMediaError(f"format {query_format!r} is not supported (png, jpeg, webp)")
        return f
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        for f, m in MEDIA_TYPES.items():
            if media == m:
                return f
    return "png"
