"""Image quality scores.

Conventions (those of the dehazing papers' public evaluation code, e.g. DehazeFormer's):
- PSNR on RGB in [0, 1] over the whole image (all channels and pixels), peak 1.
- SSIM (Wang et al., TIP 2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  computed per RGB channel on [0, 1] and averaged ("valid" region, no padding).
- haze score: no-reference haze density, the mean of the dark channel (15x15 patches) of the
  image in [0, 1] (He et al.'s prior: haze-free outdoor images have a dark channel near 0).
  Cheap (two min filters) and monotone in haze thickness; it is not a calibrated density.
"""
from __future__ import annotations

import cv2
import numpy as np


def _as_float01(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    mse = float(np.mean((_as_float01(pred) - _as_float01(ref)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    x, y = _as_float01(pred), _as_float01(ref)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    c1, c2 = 0.01**2, 0.03**2
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T
    scores = []
    for c in range(x.shape[2]):
        a, b = x[:, :, c], y[:, :, c]
        f = lambda img: cv2.filter2D(img, -1, window)[5:-5, 5:-5]  # noqa: E731 - "valid" region
        mu_a, mu_b = f(a), f(b)
        var_a = f(a * a) - mu_a**2
        var_b = f(b * b) - mu_b**2
        cov = f(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def haze_score(image: np.ndarray, patch: int = 15, max_side: int | None = None) -> float:
    """Mean dark channel in [0, 1]: higher means hazier (see module docstring).

    ``max_side``: score a copy downscaled (area averaging) so that its longer side is at most
    this (every k-th pixel), with the patch scaled alike (odd, >= 3): a few ms at any input size,
    for per-request metrics; the full-resolution score (``None``) is what /v1/evaluate reports."""
    from algorithms.common.scattering import dark_channel

    img = image if image.dtype == np.uint8 else np.clip(image * 255, 0, 255).astype(np.uint8)
    side = max(img.shape[:2])
    if max_side and side > max_side:
        k = -(-side // max_side)
        img = np.ascontiguousarray(img[::k, ::k])
        patch = max(3, int(round(patch / k)) | 1)
    return float(cv2.mean(dark_channel(img, patch))[0] / 255.0)
