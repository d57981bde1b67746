"""Guided image filter (He, Sun, Tang, "Guided Image Filtering", ECCV 2010 / TPAMI 2013).

O(N) in the number of pixels whatever the radius: every mean is an OpenCV box filter. The fast
variant (He & Sun, "Fast Guided Filter", arXiv:1505.00996) computes the linear coefficients on a
``subsample``-times smaller grid and upsamples them bilinearly: the output stays edge-aware
(the final ``a * I + b`` uses the full-resolution guide) at a fraction of the cost.
"""
from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1) -> np.ndarray:
    """Filter ``src`` (H x W float32) guided by the grey image ``guide`` (H x W float32, [0,1])."""
    guide = np.asarray(guide, dtype=np.float32)
    src = np.asarray(src, dtype=np.float32)
    h, w = guide.shape
    s = max(1, int(subsample))
    if s > 1 and min(h, w) // s >= 8:
        small = (max(1, w // s), max(1, h // s))
        g = cv2.resize(guide, small, interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, small, interpolation=cv2.INTER_AREA)
        r = max(1, radius // s)
    else:
        g, p, r = guide, src, radius
    mean_g = _box(g, r)
    mean_p = _box(p, r)
    cov_gp = _box(g * p, r) - mean_g * mean_p
    var_g = _box(g * g, r) - mean_g * mean_g
    a = cov_gp / (var_g + eps)
    b = mean_p - a * mean_g
    mean_a = _box(a, r)
    mean_b = _box(b, r)
    if g is not guide:
        mean_a = cv2.resize(mean_a, (w, h), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (w, h), interpolation=cv2.INTER_LINEAR)
    return mean_a * guide + mean_b
