"""GCANet's test-time input: RGB in pixel units plus an edge map, both shifted by -128.

Shared with PSD-GCANet, which uses the same input.
"""
from __future__ import annotations

import torch

#: the official code subtracts 128 from all four input channels (RGB and edge)
PIXEL_SHIFT = 128.0


def edge_map(rgb: torch.Tensor) -> torch.Tensor:
    """Edge channel of an N x 3 x H x W image in pixel units -> N x 1 x H x W.

    Each absolute horizontal / vertical neighbour difference is added to both pixels it joins;
    the result is averaged over the three colour channels and divided by 4 (as in the
    official ``edge_compute``).
    """
    dx = (rgb[..., :, 1:] - rgb[..., :, :-1]).abs()
    dy = (rgb[..., 1:, :] - rgb[..., :-1, :]).abs()
    edges = torch.zeros_like(rgb)
    edges[..., :, 1:] += dx
    edges[..., :, :-1] += dx
    edges[..., 1:, :] += dy
    edges[..., :-1, :] += dy
    return edges.sum(dim=1, keepdim=True) / 3 / 4


def network_input(shifted_rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 255] minus 128 (IOFacts input_range (-128, 127)) -> the 4-channel input."""
    rgb = shifted_rgb + PIXEL_SHIFT
    return torch.cat((shifted_rgb, edge_map(rgb) - PIXEL_SHIFT), dim=1)


def network_input_and_image(shifted_rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4-channel input and the [0, 255] RGB image the predicted residual is added to."""
    return network_input(shifted_rgb), shifted_rgb + PIXEL_SHIFT
