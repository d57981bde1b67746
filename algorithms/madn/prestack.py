"""The 12-channel input stack of the legacy MADN pipeline (legacy ``pre(0.5, 0)``).

Built from the uint8 image exactly as the legacy code did it (NumPy / OpenCV on a BGR image),
including its channel-order quirk: the balanced image is RGB while the other three are BGR.

Channels, each ``/ 255`` (like ``ToTensor``), in this order:

 0-2   the image itself, BGR
 3-5   "balance": per-channel grey-world gain ``k / mean_c`` (``k`` = mean of the three channel
       means), applied with ``cv2.addWeighted`` (saturating, rounded) -- merged in reversed
       order, so RGB
 6-8   "bright" 0.5: ``uint8(round(min(0.5 * img, 255)))`` (NumPy rounding, half to even), BGR
 9-11  "gamma" 2.5: ``uint8(trunc((img / 255) ** 2.5 * 255))``, BGR
"""
from __future__ import annotations

import cv2
import numpy as np

BRIGHT = 0.5
GAMMA = 2.5


def pre_stack(rgb: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 RGB -> float32 H x W x 12 in [0, 1] (see the module docstring)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {rgb.dtype} {rgb.shape}")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    f = bgr.astype(np.float64)
    bright = np.round(np.minimum(BRIGHT * f, 255.0)).astype(np.uint8)
    gamma = np.trunc((f / 255.0) ** GAMMA * 255.0).astype(np.uint8)
    planes = cv2.split(bgr)
    means = [cv2.mean(p)[0] for p in planes]
    k = sum(means) / 3.0
    # legacy: cv.addWeighted(plane, k / mean, 0, 0, 0); a zero-weighted second source is the
    # same sum and works on every OpenCV version (a scalar src2 is refused by OpenCV 5).
    # An all-black channel (mean 0) would divide by zero in the legacy code; keep it black.
    balanced = [cv2.addWeighted(p, k / m if m > 0 else 0.0, p, 0.0, 0.0) for p, m in zip(planes, means)]
    balance = cv2.merge(balanced[::-1])  # the legacy planes are named r, g, b but are B, G, R
    out = np.empty(bgr.shape[:2] + (12,), dtype=np.float32)
    for i, part in enumerate((bgr, balance, bright, gamma)):
        out[:, :, 3 * i : 3 * i + 3] = part.astype(np.float32) / np.float32(255.0)
    return out
