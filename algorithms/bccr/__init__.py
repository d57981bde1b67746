"""Boundary constraint and contextual regularization (BCCR) dehazing.

Meng, Wang, Duan, Xiang, Pan, "Efficient Image Dehazing with Boundary Constraint and
Contextual Regularization", ICCV 2013 (the algorithm of the PyPI package ``image_dehazer``).

1. airlight A: per channel, the maximum of the min-filtered channel;
2. boundary constraint: radiance stays in [C0, C1], giving a lower bound t_b of the
   transmission, refined by a morphological closing;
3. contextual regularization: min_t  lambda/2 ||t - t_b||^2 + sum_j ||W_j o (D_j * t)||_1 with a
   bank of eight Kirsch operators and a Laplacian (D_j) and edge-aware weights W_j, solved by
   variable splitting with increasing beta. The t-step is one FFT pair (torch.fft) per iteration: the sum
   of adjoint filter responses is formed in the image domain (3x3 correlations with periodic
   borders, exactly the FFT's circular model) instead of one FFT per filter;
4. J = (I - A) / max(t, t_min)**delta + A.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from pydantic import Field

from algorithms.base import Dehazer
from algorithms.common.scattering import ClassicalParams, classical_factory, recover


class BCCRParams(ClassicalParams):
    airlight_patch: int = Field(15, ge=1, le=101)
    c0: float = Field(20.0, ge=0, lt=255, description="radiance lower bound (0..255)")
    c1: float = Field(300.0, gt=255, description="radiance upper bound (0..255)")
    closing_patch: int = Field(3, ge=1, le=31)
    reg_lambda: float = Field(0.1, gt=0, description="weight of the data term")
    sigma: float = Field(0.5, gt=0, description="edge weight scale")
    beta0: float = Field(1.0, gt=0)
    beta_max: float = Field(256.0, gt=0)
    beta_rate: float = Field(2.0 * np.sqrt(2.0), gt=1)
    delta: float = Field(0.85, gt=0, le=2, description="exponent on t in the recovery")
    t_min: float = Field(0.05, gt=0, lt=1)


def _filter_bank() -> list[np.ndarray]:
    """Eight Kirsch compass operators and a Laplacian, each scaled to unit norm."""
    base = np.array([[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]], dtype=np.float32)
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    values = [base[i, j] for i, j in ring]
    bank = []
    for shift in range(8):
        k = np.zeros((3, 3), np.float32)
        for (i, j), v in zip(ring, values[-shift:] + values[:-shift]):
            k[i, j] = v
        bank.append(k)
    bank.append(np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float32))
    return [k / np.linalg.norm(k) for k in bank]


FILTERS = _filter_bank()


def _wrap_pad(x: np.ndarray) -> np.ndarray:
    return cv2.copyMakeBorder(x, 1, 1, 1, 1, cv2.BORDER_WRAP)


def _correlate_padded(padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(padded, cv2.CV_32F, kernel, borderType=cv2.BORDER_ISOLATED)[1:-1, 1:-1]


def _wrap_correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 correlation with periodic borders (the FFT's circular convolution model)."""
    return _correlate_padded(_wrap_pad(x), kernel)


def _soft_threshold(d: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """sign(d) * max(|d| - threshold, 0), computed as d - clip(d, -threshold, threshold)."""
    return cv2.subtract(d, cv2.min(cv2.max(d, -threshold), threshold))


@lru_cache(maxsize=8)
def _filter_energy(h: int, w: int) -> np.ndarray:
    """sum_j |F(D_j)|^2 on an h x w grid (rfft layout): the FFT of the summed autocorrelations."""
    auto = sum(cv2.filter2D(np.pad(k, 2), cv2.CV_32F, k, borderType=cv2.BORDER_CONSTANT) for k in FILTERS)
    psf = np.zeros((h, w), np.float32)
    psf[:5, :5] = auto[1:6, 1:6]
    psf = np.roll(psf, (-2, -2), axis=(0, 1))
    return torch.fft.rfft2(torch.from_numpy(psf)).real


def _fast_fft_size(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3 and 5 (FFTs of such sizes are fast)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


class BoundaryConstraintDehazer(Dehazer):
    def __init__(self, params: BCCRParams = BCCRParams()):
        self.params = params

    def airlight(self, image: np.ndarray) -> np.ndarray:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (self.params.airlight_patch,) * 2)
        return np.array([cv2.erode(c, kernel).max() for c in cv2.split(image)], dtype=np.float32) / 255.0

    def boundary_transmission(self, image: np.ndarray, light: np.ndarray) -> np.ndarray:
        p = self.params
        img = image.astype(np.float32) * (1.0 / 255.0)
        c0, c1 = p.c0 / 255.0, p.c1 / 255.0
        lower = (light - img) / np.maximum(light - c0, 1e-6)
        upper = (img - light) / np.maximum(c1 - light, 1e-6)
        t_b = np.minimum(np.maximum(lower, upper).max(axis=2), 1.0).astype(np.float32)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (p.closing_patch,) * 2)
        return cv2.morphologyEx(t_b, cv2.MORPH_CLOSE, kernel)

    def regularize(self, image: np.ndarray, t_b: np.ndarray) -> np.ndarray:
        """Contextual regularization of t_b. The problem is solved on the image mirrored out to
        FFT-friendly sizes, so the periodic model of the FFT never wraps across the border."""
        p = self.params
        h0, w0 = t_b.shape
        h, w = _fast_fft_size(h0 + 8), _fast_fft_size(w0 + 8)
        image = cv2.copyMakeBorder(image, 0, h - h0, 0, w - w0, cv2.BORDER_REFLECT)
        t_b = cv2.copyMakeBorder(t_b, 0, h - h0, 0, w - w0, cv2.BORDER_REFLECT)
        img = image.astype(np.float32) * (1.0 / 255.0)
        weights = []
        img_padded = _wrap_pad(img)
        channel_sum = np.full((1, 3), -1.0 / (2.0 * p.sigma * p.sigma), np.float32)
        for k in FILTERS:
            resp = _correlate_padded(img_padded, k[::-1, ::-1])
            weights.append(cv2.exp(cv2.transform(cv2.multiply(resp, resp), channel_sum)))
        energy = _filter_energy(h, w)
        data_fft = torch.fft.rfft2(torch.from_numpy(t_b))
        t = t_b.copy()
        beta = p.beta0
        while beta < p.beta_max:
            gamma = p.reg_lambda / beta
            adjoint_sum = np.zeros_like(t)
            t_padded = _wrap_pad(t)
            for k, wk in zip(FILTERS, weights):
                d = _correlate_padded(t_padded, k[::-1, ::-1])  # D_j * t (convolution)
                u = _soft_threshold(d, cv2.multiply(wk, 1.0 / beta))
                cv2.add(adjoint_sum, _wrap_correlate(u, k), dst=adjoint_sum)  # += D_j^T u
            spectrum = (gamma * data_fft + torch.fft.rfft2(torch.from_numpy(adjoint_sum))) / (gamma + energy)
            t = torch.fft.irfft2(spectrum, s=(h, w)).numpy()
            beta *= p.beta_rate
        return np.ascontiguousarray(t[:h0, :w0])

    def dehaze(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        light = self.airlight(image)
        t = self.regularize(image, self.boundary_transmission(image, light))
        return recover(image, light, np.abs(t), t_min=p.t_min, exponent=p.delta)

    def describe(self):
        return {"device": "cpu", "params": self.params.model_dump()}


factory = classical_factory(BoundaryConstraintDehazer, BCCRParams)
