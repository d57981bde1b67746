"""Dark Channel Prior dehazing.

He, Sun, Tang, "Single Image Haze Removal Using Dark Channel Prior", CVPR 2009 / TPAMI 2011;
transmission refined with the guided filter (He, Sun, Tang, ECCV 2010) instead of soft matting.
"""
from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from algorithms.base import Dehazer
from algorithms.common.guided_filter import guided_filter
from algorithms.common.scattering import ClassicalParams, atmospheric_light, classical_factory, dark_channel, recover


class DCPParams(ClassicalParams):
    patch: int = Field(15, ge=1, le=101, description="side of the dark-channel min filter (pixels)")
    omega: float = Field(0.95, gt=0, le=1, description="fraction of haze removed")
    t0: float = Field(0.1, gt=0, lt=1, description="lower bound of the transmission")
    top_fraction: float = Field(0.001, gt=0, le=0.1, description="brightest dark-channel fraction for A")
    gf_radius: int = Field(60, ge=1, description="guided filter radius (pixels)")
    gf_eps: float = Field(1e-4, gt=0, description="guided filter regularisation")
    gf_subsample: int = Field(4, ge=1, le=16, description="fast guided filter subsampling")


class DarkChannelPrior(Dehazer):
    def __init__(self, params: DCPParams = DCPParams()):
        self.params = params

    def transmission(self, image: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Raw transmission 1 - omega * dark(I / A) (float32, before refinement)."""
        p = self.params
        # I_c / A_c through one lookup table per channel keeps the min filters in uint8
        levels = np.arange(256, dtype=np.float32)
        channels = [
            cv2.LUT(c, np.clip(levels / (255.0 * a) * 255.0 + 0.5, 0, 255).astype(np.uint8))
            for c, a in zip(cv2.split(image), light)
        ]
        normalised = cv2.merge(channels)
        dark = dark_channel(normalised, p.patch).astype(np.float32) * (1.0 / 255.0)
        return 1.0 - p.omega * dark

    def dehaze(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        light = atmospheric_light(image, dark_channel(image, p.patch), p.top_fraction)
        t = self.transmission(image, light)
        guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
        t = guided_filter(guide, t, p.gf_radius, p.gf_eps, p.gf_subsample)
        return recover(image, light, t, t_min=p.t0)

    def describe(self):
        return {"device": "cpu", "params": self.params.model_dump()}


factory = classical_factory(DarkChannelPrior, DCPParams)
