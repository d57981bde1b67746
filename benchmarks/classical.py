"""Classical priors at 1920x1080, single-threaded, against baselines measured in the same run.

    python benchmarks/classical.py [--repeat 5] [--image-dehazer-python /path/to/python]

- DCP (ours: uint8 min filters + fast guided filter) vs a straightforward float32 OpenCV DCP
  (same parameters, full-resolution guided filter): time, ratio, PSNR between the two outputs.
- CAP and BCCR times.
- BCCR vs the PyPI package image_dehazer (Meng et al.'s algorithm): time, ratio, and PSNR between
  the two outputs (same parameters: both packages' defaults). It breaks on NumPy 2, so it runs in
  another interpreter with numpy<2 when --image-dehazer-python is given, e.g.
      python3.11 -m venv /tmp/imd && /tmp/imd/bin/pip install "numpy<2" opencv-python-headless image_dehazer
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.common.quality import psnr  # noqa: E402
from algorithms.registry import create  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def baseline_dcp(image: np.ndarray, patch=15, omega=0.95, t0=0.1, top=0.001, r=60, eps=1e-4) -> np.ndarray:
    """The textbook float32 OpenCV implementation of DCP + guided filter (the baseline)."""
    img = image.astype(np.float32) / 255.0
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(img.min(axis=2), kernel)
    n = max(1, int(dark.size * top))
    idx = np.argsort(dark.ravel())[-n:]
    candidates = img.reshape(-1, 3)[idx]
    light = candidates[np.argmax(candidates.sum(axis=1))]
    t = 1.0 - omega * cv2.erode((img / light).min(axis=2), kernel)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    box = lambda x: cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1))  # noqa: E731
    mean_i, mean_p = box(gray), box(t)
    a = (box(gray * t) - mean_i * mean_p) / (box(gray * gray) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    t = box(a) * gray + box(b)
    out = (img - light) / np.maximum(t, t0)[:, :, None] + light
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def bccr_like_image_dehazer():
    """Our BCCR configured like the package, to explain the distance between the two outputs:
    its 3 regularisation iterations (beta up to 16), and its boundary constraint, which ignores
    the red channel (``np.maximum(t_b, t_g, t_r)``: NumPy's third argument is the output)."""
    from algorithms.bccr import BCCRParams, BoundaryConstraintDehazer

    class PackageQuirk(BoundaryConstraintDehazer):
        def boundary_transmission(self, image, light):
            p = self.params
            img = image.astype(np.float32) / 255.0
            t = np.maximum((light - img) / (light - p.c0 / 255.0), (img - light) / (p.c1 / 255.0 - light))
            t_b = np.minimum(np.maximum(t[:, :, 2], t[:, :, 1]), 1.0).astype(np.float32)  # B, G only
            return cv2.morphologyEx(t_b, cv2.MORPH_CLOSE, np.ones((3, 3), np.float32))

    return {"beta_max 16": BoundaryConstraintDehazer(BCCRParams(beta_max=16.0)),
            "beta_max 16 + red-channel quirk": PackageQuirk(BCCRParams(beta_max=16.0))}


def timeit(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def image_dehazer_time(python: str, path: Path, out_path: Path, repeat: int) -> str:
    """Best time of image_dehazer.remove_haze on ``path`` (BGR, as it expects); its output is
    written to ``out_path``."""
    code = (
        "import sys,time,cv2,image_dehazer\n"
        f"img=cv2.imread({str(path)!r})\n"
        "best=1e9\n"
        f"for _ in range({max(1, repeat // 2)}):\n"
        "    t=time.perf_counter(); out,_=image_dehazer.remove_haze(img, showHazeTransmissionMap=False)\n"
        "    best=min(best,time.perf_counter()-t)\n"
        f"cv2.imwrite({str(out_path)!r}, out)\n"
        "print(f'{best:.3f}')\n"
    )
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    return r.stdout.strip() if r.returncode == 0 else f"failed: {r.stderr.strip().splitlines()[-1]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", default=str(SHARED / "data" / "o-haze" / "hazy" / "35_outdoor_hazy.jpg"))
    ap.add_argument("--image-dehazer-python", default=None)
    args = ap.parse_args()

    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    src = cv2.imread(args.image)
    if src is None:
        raise SystemExit(f"cannot read {args.image}")
    bgr = cv2.resize(src, (1920, 1080), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    print(f"input: {args.image} resized to 1920x1080; single thread; best of {args.repeat}")

    dcp = create("DCP")
    t_ours = timeit(lambda: dcp(rgb), args.repeat)
    t_base = timeit(lambda: baseline_dcp(rgb), args.repeat)
    agree = psnr(dcp(rgb), baseline_dcp(rgb))
    print(f"DCP ours            {t_ours:7.3f} s")
    print(f"DCP float32 OpenCV  {t_base:7.3f} s   ours/baseline = {t_ours / t_base:.2f}x   outputs {agree:.1f} dB apart")
    times = {}
    for name in ("CAP", "BCCR"):
        d = create(name)
        times[name] = timeit(lambda: d(rgb), args.repeat)
        print(f"{name:<19} {times[name]:7.3f} s")
    if args.image_dehazer_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "in.png"
            cv2.imwrite(str(path), bgr)
            out_path = Path(tmp) / "theirs.png"
            theirs = image_dehazer_time(args.image_dehazer_python, path, out_path, args.repeat)
            if theirs[0].isdigit():
                agree = psnr(create("BCCR")(rgb), np.ascontiguousarray(cv2.imread(str(out_path))[:, :, ::-1]))
                print(f"image_dehazer       {theirs:>7} s   BCCR ours/image_dehazer = "
                      f"{times['BCCR'] / float(theirs):.2f}x   outputs {agree:.1f} dB apart")
                reference = np.ascontiguousarray(cv2.imread(str(out_path))[:, :, ::-1])
                for label, like in bccr_like_image_dehazer().items():
                    print(f"  our BCCR with {label}: outputs {psnr(like(rgb), reference):.1f} dB apart")
            else:
                print(f"image_dehazer       {theirs}")
    else:
        try:
            import image_dehazer  # noqa: F401

            print("image_dehazer is importable here: pass --image-dehazer-python to time it in isolation")
        except ImportError as exc:
            print(f"image_dehazer: not timed ({exc}); see the module docstring")


if __name__ == "__main__":
    main()
