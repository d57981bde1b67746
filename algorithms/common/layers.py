"""Layers shared by several networks."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["GroupNorm"]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state-dict keys) that stays accurate on channels-last
    CPU tensors.

    PyTorch's CPU GroupNorm kernel for channels-last input loses about 1e-5 relative precision on
    large maps (measured: 1.2e-4 max error on a 64 x 448 x 448 map in float32, against 9e-7 for
    the NCHW kernel), enough to break a conformance vector. Such inputs are normalised in NCHW
    and handed back channels-last, so the surrounding convolutions keep their fast layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)
