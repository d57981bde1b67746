"""The atmospheric scattering model I = J t + A (1 - t), shared by the physics-based dehazers,
and the factory glue for parameterised (weight-free) algorithms."""
from __future__ import annotations

from typing import Callable, Type

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from algorithms.base import BuildRequest, Dehazer
from algorithms.errors import RegistryError


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """He et al.'s dark channel of a uint8 RGB image: min over colours, then over a patch x
    patch window (uint8 in, uint8 out)."""
    r, g, b = cv2.split(image)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(cv2.min(cv2.min(r, g), b), kernel, borderType=cv2.BORDER_REPLICATE)


def atmospheric_light(image: np.ndarray, score: np.ndarray, top_fraction: float = 0.001) -> np.ndarray:
    """He et al.: among the ``top_fraction`` pixels with the highest ``score`` (e.g. the dark
    channel), the colour of the one with the highest intensity. Returns float32 RGB in [0, 1]."""
    flat = score.reshape(-1)
    k = max(1, int(flat.size * top_fraction))
    idx = np.argpartition(flat, flat.size - k)[-k:]
    pixels = image.reshape(-1, 3)[idx]
    brightest = pixels[np.argmax(pixels.astype(np.int32).sum(axis=1))]
    a = brightest.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    return np.clip(a, 1.0 / 255.0, 1.0)


def recover(image: np.ndarray, light: np.ndarray, t: np.ndarray, t_min: float = 0.1,
            t_max: float = 1.0, exponent: float = 1.0) -> np.ndarray:
    """J = (I - A) / clip(t, t_min, t_max)**exponent + A for a uint8 RGB image -> uint8."""
    t = np.clip(t, t_min, t_max).astype(np.float32)
    if exponent != 1.0:
        t = cv2.pow(t, exponent)
    inv = cv2.merge([1.0 / t] * 3)
    a255 = (light * 255.0).astype(np.float32)
    diff = cv2.subtract(image.astype(np.float32), tuple(float(v) for v in a255) + (0.0,))
    out = cv2.add(cv2.multiply(diff, inv), tuple(float(v) for v in a255) + (0.0,))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8) if out.dtype != np.uint8 else out


class ClassicalParams(BaseModel):
    """Base of the parameter models of weight-free algorithms (values come from the registry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def classical_factory(dehazer_cls: Type[Dehazer], params_cls: Type[ClassicalParams]) -> Callable:
    """Registry factory: validate the variant's ``params`` and build the Dehazer."""

    def factory(req: BuildRequest) -> Dehazer:
        try:
            params = params_cls(**req.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise RegistryError(f"entry {req.algorithm!r} variant {req.variant!r}, field params.{field}: {first['msg']}") from exc
        return dehazer_cls(params)

    factory.params_model = params_cls  # type: ignore[attr-defined]
    return factory
