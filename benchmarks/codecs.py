"""Image decode / encode cost by library, to put the codec work on the cheapest side.

    python benchmarks/codecs.py [--size 1920x1080] [--repeat 7]

PIL vs OpenCV vs torchvision.io for PNG, JPEG and WebP, single-threaded, on a real hazy photo
resized to --size (best of --repeat, milliseconds). The service decodes with PIL (it needs
PIL's header checks against decompression bombs, EXIF orientation and palette/CMYK/16-bit
handling) and encodes with OpenCV; this script is the evidence for that split.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))

    import cv2
    import torch
    import torchvision.io as tvio
    from PIL import Image

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    src = SHARED / "data" / "sots-indoor" / "hazy" / "1400_5.png"
    rgb = np.asarray(Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC))
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    chw = torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()

    encoded = {}
    for fmt, ext, pil_kw in [("PNG", ".png", {"compress_level": 3}), ("JPEG", ".jpg", {"quality": 95}),
                             ("WEBP", ".webp", {"quality": 95})]:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt, **pil_kw)
        encoded[fmt] = buf.getvalue()

    def pil_decode(data: bytes):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def cv_decode(data: bytes):
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def tv_decode(data: bytes):
        return tvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=tvio.ImageReadMode.RGB)

    def pil_encode(fmt, kw):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt, **kw)
        return buf.getvalue()

    cv_params = {"PNG": [cv2.IMWRITE_PNG_COMPRESSION, 3],
                 "PNG-rle1": [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE], "JPEG": [cv2.IMWRITE_JPEG_QUALITY, 95],
                 "WEBP": [cv2.IMWRITE_WEBP_QUALITY, 95]}
    cv_ext = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
    tv_encode = {"PNG": lambda: tvio.encode_png(chw, compression_level=3),
                 "JPEG": lambda: tvio.encode_jpeg(chw, quality=95)}
    pil_kw = {"PNG": {"compress_level": 3}, "JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

    print(f"# codecs at {w}x{h}, single-threaded, best of {args.repeat} (ms); python {sys.version.split()[0]}")
    print("| format | bytes | decode PIL | decode OpenCV | decode torchvision | encode PIL | encode OpenCV | encode torchvision |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt, data in encoded.items():
        d_pil = best(lambda: pil_decode(data), args.repeat)
        d_cv = best(lambda: cv_decode(data), args.repeat)
        try:
            d_tv = f"{best(lambda: tv_decode(data), args.repeat):.1f}"
        except RuntimeError as exc:  # torchvision built without this codec
            d_tv = f"n/a ({str(exc)[:30]})"
        e_pil = best(lambda: pil_encode(fmt, pil_kw[fmt]), args.repeat)
        e_cv = best(lambda: cv2.imencode(cv_ext[fmt], bgr, cv_params[fmt]), args.repeat)
        e_tv = f"{best(tv_encode[fmt], args.repeat):.1f}" if fmt in tv_encode else "n/a"
        print(f"| {fmt} | {len(data):,} | {d_pil:.1f} | {d_cv:.1f} | {d_tv} | {e_pil:.1f} | {e_cv:.1f} | {e_tv} |")
    ok, rle = cv2.imencode(".png", bgr, cv_params["PNG-rle1"])
    e_rle = best(lambda: cv2.imencode(".png", bgr, cv_params["PNG-rle1"]), args.repeat)
    print(f"| PNG, OpenCV level 1 + RLE strategy (the service's encoder) | {len(rle):,} | | | | | {e_rle:.1f} | |")


if __name__ == "__main__":
    main()
