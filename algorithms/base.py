"""The Dehazer contract.

A Dehazer takes one ``numpy.ndarray`` of dtype uint8, shape H x W x 3, RGB (H, W >= 16) and
returns an array of the same shape and dtype. It is built by its algorithm's factory from a
registry entry (see ``algorithms.registry.create``) and is safe to call repeatedly; it is not
required to be thread-safe.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.errors import InvalidImageError

MIN_SIDE = 16


def check_image(image: Any) -> np.ndarray:
    """Validate the contract's input and return it as a C-contiguous array."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"expected shape H x W x 3 (RGB), got {image.shape}")
    h, w = image.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InvalidImageError(f"image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")
    return np.ascontiguousarray(image)


class Dehazer(ABC):
    """Callable image -> image. Subclasses implement :meth:`dehaze`."""

    #: registry name of the algorithm and the variant this instance serves
    algorithm: str = ""
    variant: str | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        out = self.dehaze(image)
        if out.shape != image.shape or out.dtype != np.uint8:
            raise RuntimeError(
                f"{type(self).__name__} broke the contract: returned {out.shape} {out.dtype} "
                f"for input {image.shape}"
            )
        return out

    @abstractmethod
    def dehaze(self, image: np.ndarray) -> np.ndarray:
        """Dehaze a validated uint8 H x W x 3 RGB image."""

    def describe(self) -> dict[str, Any]:
        """Facts shown by GET /v1/models (device, parameter count, ...)."""
        return {}

    # -- dynamic batching (optional) ---------------------------------------------------------
    def batch_key(self, image: np.ndarray) -> Any | None:
        """Images with equal non-None keys may be dehazed together by :meth:`dehaze_batch` with
        the same result as one by one. None (the default) means: never batch this image."""
        return None

    def dehaze_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Dehaze several images that share a :meth:`batch_key` (default: one by one)."""
        return [self(image) for image in images]


@dataclass
class BuildRequest:
    """What an algorithm's factory receives from ``algorithms.registry.create``."""

    algorithm: str
    variant: str
    #: the network variant (a key of the algorithm's NETWORKS table), if any
    arch: str | None = None
    #: algorithm parameters: the entry's params overridden by the variant's
    params: dict[str, Any] = field(default_factory=dict)
    #: local path of the (fetched, checksum-verified) weights file; None when the variant has none
    weights_path: Path | None = None
    #: device / tiling / threads (algorithms.common.runtime.RuntimeOptions)
    runtime: Any = None
    #: further weight files of the variant: params named ``*_path`` (relative to the weights
    #: root), fetched like ``path``; keyed by the param name
    extra_weights: dict[str, Path] = field(default_factory=dict)
