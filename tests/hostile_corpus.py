"""Hostile and odd inputs, generated (no binary fixtures in the repo).

Each case: name, bytes, declared Content-Type, expected HTTP status, expected error code (None
for success), for accepted inputs the expected output size (w, h), and for rejected ones a word
the error message must contain (the problem, or the format it names)."""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_BYTES = 3_000_000
MAX_PIXELS = 4_000_000


@dataclass
class Case:
    name: str
    data: bytes
    content_type: str | None
    status: int
    code: str | None
    size: tuple[int, int] | None = None  # (w, h) of the result for accepted inputs
    note: str | None = None  # expected substring of X-Input-Notes
    message: str | None = None  # expected substring of the error message (case-insensitive)


def _rgb(w, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 65536, 9)) + _chunk(b"IEND", b"")


def gif_bomb(w: int, h: int) -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x08\x02\x4c\x01\x00"
    return header + image + b"\x3b"


def webp_bomb() -> bytes:
    """A lossless WebP header declaring 16384 x 16384 pixels (268 MP)."""
    w = h = 16384
    bits = (w - 1) | ((h - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def tiff_bomb(w: int, h: int) -> bytes:
    """A little-endian TIFF whose IFD declares w x h RGB pixels and one tiny strip."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 16


def exif_rotated_jpeg() -> bytes:
    img = Image.fromarray(_rgb(64, 40, 5))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _save(img, "JPEG", exif=exif.tobytes(), quality=90)


def animated(fmt: str) -> bytes:
    frames = [Image.fromarray(_rgb(48, 32, s)) for s in range(3)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def cases() -> list[Case]:
    png = _save(Image.fromarray(_rgb(64, 48)), "PNG")
    jpeg = _save(Image.fromarray(_rgb(64, 48)), "JPEG", quality=90)
    webp = _save(Image.fromarray(_rgb(64, 48)), "WEBP", quality=90)
    gray16 = _save(Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)), "PNG")
    rgb48 = zlib.compress(b"".join(b"\x00" + np.full((64, 3), 40000, ">u2").tobytes() for _ in range(48)))
    png48 = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 48, 16, 2, 0, 0, 0)) + \
        _chunk(b"IDAT", rgb48) + _chunk(b"IEND", b"")
    return [
        Case("zero bytes", b"", "image/png", 422, "invalid_image", message="empty"),
        Case("truncated PNG", png[: len(png) // 2], "image/png", 422, "invalid_image", message="truncated"),
        Case("truncated JPEG", jpeg[: len(jpeg) // 2], "image/jpeg", 422, "invalid_image", message="truncated"),
        Case("truncated WebP", webp[: len(webp) // 2], "image/webp", 422, "invalid_image", message="corrupt"),
        Case("PNG declared as JPEG", png, "image/jpeg", 415, "unsupported_media_type", message="image/jpeg"),
        Case("text declared as PNG", b"hello, I am not an image" * 4, "image/png", 415, "unsupported_media_type",
             message="not an image"),
        Case("PNG + HTML polyglot", png + b"<html><script>alert(1)</script></html>", "image/png", 415,
             "unsupported_media_type", message="polyglot"),
        Case("JPEG + ZIP polyglot", jpeg + b"PK\x03\x04" + b"\0" * 26 + b"PK\x05\x06" + b"\0" * 18, "image/jpeg",
             415, "unsupported_media_type", message="ZIP"),
        Case("PNG bomb 30000x30000", png_bomb(30000, 30000), "image/png", 413, "payload_too_large",
             message="30000x30000"),
        Case("GIF bomb 65535x65535", gif_bomb(65535, 65535), "image/gif", 413, "payload_too_large", message="pixels"),
        Case("WebP bomb 16384x16384", webp_bomb(), "image/webp", 413, "payload_too_large", message="pixels"),
        Case("TIFF bomb 50000x50000", tiff_bomb(50000, 50000), "image/tiff", 413, "payload_too_large",
             message="pixels"),
        Case("over the pixel limit", _save(Image.new("RGB", (2100, 2100), (90, 90, 90)), "PNG"), "image/png", 413,
             "payload_too_large", message="pixel"),
        Case("over the byte limit", b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_BYTES, "image/png", 413, "payload_too_large",
             message="bytes"),
        Case("1x1", _save(Image.new("RGB", (1, 1)), "PNG"), "image/png", 422, "invalid_image", message="at least"),
        Case("1x100000", _save(Image.new("RGB", (1, 100000)), "PNG"), "image/png", 422, "invalid_image",
             message="1x100000"),
        Case("HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64, "image/heic", 415,
             "unsupported_media_type", message="HEIC"),
        Case("AVIF", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + b"\0" * 64, "image/avif", 415,
             "unsupported_media_type", message="AVIF"),
        Case("16-bit grey PNG", gray16, "image/png", 200, None, (64, 48)),
        Case("48-bit RGB PNG", png48, "image/png", 200, None, (64, 48)),
        Case("palette PNG", _save(Image.fromarray(_rgb(64, 48)).convert("P"), "PNG"), "image/png", 200, None, (64, 48)),
        Case("palette PNG with transparency", _save(Image.fromarray(_rgb(64, 48)).convert("P"), "PNG", transparency=0),
             "image/png", 200, None, (64, 48)),
        Case("grey JPEG", _save(Image.fromarray(_rgb(64, 48)).convert("L"), "JPEG"), "image/jpeg", 200, None, (64, 48)),
        Case("LA PNG", _save(Image.fromarray(_rgb(64, 48)).convert("LA"), "PNG"), "image/png", 200, None, (64, 48)),
        Case("RGBA PNG", _save(Image.fromarray(_rgb(64, 48)).convert("RGBA"), "PNG"), "image/png", 200, None, (64, 48)),
        Case("CMYK JPEG", _save(Image.fromarray(_rgb(64, 48)).convert("CMYK"), "JPEG"), "image/jpeg", 200, None, (64, 48)),
        Case("EXIF-rotated JPEG", exif_rotated_jpeg(), "image/jpeg", 200, None, (40, 64), "EXIF orientation"),
        Case("animated GIF", animated("GIF"), "image/gif", 200, None, (48, 32), "first frame"),
        Case("animated WebP", animated("WEBP"), "image/webp", 200, None, (48, 32), "first frame"),
        Case("BMP", _save(Image.fromarray(_rgb(64, 48)), "BMP"), "image/bmp", 200, None, (64, 48)),
        Case("TIFF", _save(Image.fromarray(_rgb(64, 48)), "TIFF"), "image/tiff", 200, None, (64, 48)),
        Case("octet-stream JPEG", jpeg, "application/octet-stream", 200, None, (64, 48)),
    ]
