"""Typed errors raised by the model zoo.

They carry a stable machine-readable ``code``; the serving layer maps each class to an HTTP
status in one place (serve_app/errors.py). Nothing here knows about HTTP.
"""
from __future__ import annotations


class DehazeError(Exception):
    """Base class of every error the zoo raises on purpose."""

    code = "dehaze_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RegistryError(DehazeError):
    """configs/models.yaml is malformed; the message names the entry and the field."""

    code = "invalid_registry"


class UnknownModelError(DehazeError):
    code = "unknown_model"


class UnknownVariantError(DehazeError):
    code = "unknown_variant"


class WeightsUnavailableError(DehazeError):
    """A variant cannot be loaded: weights missing, corrupt, wrong checksum or wrong layout."""

    code = "weights_unavailable"


class InvalidImageError(DehazeError):
    """The input array is not an H x W x 3 uint8 RGB image of an acceptable size."""

    code = "invalid_image"


class CheckpointFormatError(WeightsUnavailableError):
    code = "bad_checkpoint"
