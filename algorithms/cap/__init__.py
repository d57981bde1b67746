"""Colour Attenuation Prior dehazing.

Zhu, Mai, Shao, "A Fast Single Image Haze Removal Algorithm Using Color Attenuation Prior",
IEEE TIP 24(11), 2015. Scene depth is linear in brightness and saturation,
d = theta0 + theta1 * v + theta2 * s (the published coefficients learned on 500 synthetic
images), min-filtered, refined with the guided filter; t = exp(-beta * d).
"""
from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from algorithms.base import Dehazer
from algorithms.common.guided_filter import guided_filter
from algorithms.common.scattering import ClassicalParams, atmospheric_light, classical_factory, recover


class CAPParams(ClassicalParams):
    theta0: float = Field(0.121779, description="published linear depth model: intercept")
    theta1: float = Field(0.959710, description="published coefficient of brightness v")
    theta2: float = Field(-0.780245, description="published coefficient of saturation s")
    beta: float = Field(1.0, gt=0, description="scattering coefficient")
    patch: int = Field(15, ge=1, le=101, description="min filter over the depth map")
    top_fraction: float = Field(0.001, gt=0, le=0.1, description="farthest fraction of pixels for A")
    t_min: float = Field(0.1, gt=0, lt=1)
    t_max: float = Field(0.9, gt=0, le=1)
    gf_radius: int = Field(60, ge=1)
    gf_eps: float = Field(1e-3, gt=0)
    gf_subsample: int = Field(4, ge=1, le=16)


class ColorAttenuationPrior(Dehazer):
    def __init__(self, params: CAPParams = CAPParams()):
        self.params = params

    def depth(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        _, s, v = cv2.split(hsv)
        d = p.theta0 + (p.theta1 / 255.0) * v.astype(np.float32) + (p.theta2 / 255.0) * s.astype(np.float32)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (p.patch, p.patch))
        return cv2.erode(d, kernel, borderType=cv2.BORDER_REPLICATE)

    def dehaze(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        d = self.depth(image)
        guide = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
        d = guided_filter(guide, d, p.gf_radius, p.gf_eps, p.gf_subsample)
        light = atmospheric_light(image, d, p.top_fraction)
        t = np.exp(-p.beta * d)
        return recover(image, light, t, t_min=p.t_min, t_max=p.t_max)

    def describe(self):
        return {"device": "cpu", "params": self.params.model_dump()}


factory = classical_factory(ColorAttenuationPrior, CAPParams)
