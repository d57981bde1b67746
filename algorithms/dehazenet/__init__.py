"""DehazeNet (Cai et al., IEEE TIP 2016): a 16x16-patch transmission estimator plus the
atmospheric-scattering pipeline of the PyTorch port's ``defog()``.

The network only regresses t per patch, so this algorithm has its own Dehazer:

1. the image is cut into non-overlapping 16x16 patches (reflect-padded bottom/right to a
   multiple of 16, so every pixel gets a transmission; the port left the last partial
   row/column hazy) and t is estimated per patch on the ImageNet-normalised image;
2. atmospheric light A = the brightest value (any channel) inside the 1% of patches with the
   lowest t (at least one patch: the port used none below 100 patches, i.e. A = 0);
3. scene radiance J = (I - A (1 - t)) / t per patch (``algorithms.common.scattering.recover``),
   t floored at ``MIN_TRANSMISSION``.
"""
from __future__ import annotations

import numpy as np
import torch

from algorithms.base import BuildRequest
from algorithms.common.network import (
    IOFacts,
    NetworkDehazer,
    NetworkVariant,
    network_factory,
    to_tensor01,
)
from algorithms.common.padding import pad_to_multiple
from algorithms.common.scattering import recover
from algorithms.dehazenet.arch import DehazeNet

PATCH = 16
#: the atmospheric light is searched in the 1/AIRLIGHT_SHARE of the patches with the lowest t
AIRLIGHT_SHARE = 100
#: lower bound on t in the inversion (the port had none; t = 0 would divide by zero)
MIN_TRANSMISSION = 0.1
#: patches per forward pass (bounds memory on large images)
PATCH_BATCH = 4096

NETWORKS: dict[str, NetworkVariant] = {
    "dehazenet": NetworkVariant(
        build=DehazeNet,
        io=IOFacts(
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            pad_multiple=PATCH,
            min_size=PATCH,
            tileable=False,  # the atmospheric light is a global estimate
        ),
        paper="DehazeNet: An End-to-End System for Single Image Haze Removal (Cai et al., IEEE TIP 2016)",
    ),
}


def to_patches(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """(1, C, R*patch, K*patch) -> (K*R, C, patch, patch), column-major like the port's loop
    (columns outer, rows inner)."""
    c = x.shape[1]
    tiles = x[0].unfold(1, patch, patch).unfold(2, patch, patch)  # C, R, K, p, p
    return tiles.permute(2, 1, 0, 3, 4).reshape(-1, c, patch, patch)


def patch_transmission(network: DehazeNet, x_norm: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """Normalised (1, 3, R*patch, K*patch) image -> (R, K) transmission, one value per patch."""
    rows, cols = x_norm.shape[-2] // patch, x_norm.shape[-1] // patch
    # channels-last: ~3x faster on CPU for these many tiny 4- and 16-channel convolutions
    patches = to_patches(x_norm, patch).contiguous(memory_format=torch.channels_last)
    t = torch.cat([network(chunk) for chunk in patches.split(PATCH_BATCH)]).view(cols, rows)
    return t.t()


def atmospheric_light(x01: torch.Tensor, t_grid: torch.Tensor, patch: int = PATCH,
                      share: int = AIRLIGHT_SHARE) -> torch.Tensor:
    """Brightest value of ``x01`` (1, 3, R*patch, K*patch) inside the 1/``share`` of the patches
    with the lowest transmission (stable order, as the port's ``sorted``); at least one patch."""
    t = t_grid.t().reshape(-1)  # the port's column-major patch order
    count = max(1, t.numel() // share)
    darkest = torch.sort(t, stable=True).indices[:count]
    patch_max = to_patches(x01, patch).amax(dim=(1, 2, 3))
    return patch_max[darkest].max()


def transmission_map(t_grid: torch.Tensor, size: tuple[int, int], patch: int = PATCH) -> np.ndarray:
    """(R, K) per-patch transmission -> H x W float32 map (constant on each patch)."""
    t = t_grid.float().cpu().numpy()
    return np.repeat(np.repeat(t, patch, axis=0), patch, axis=1)[: size[0], : size[1]]


class DehazeNetDehazer(NetworkDehazer):
    """Transmission per 16x16 patch -> atmospheric light -> scattering-model inversion."""

    def __init__(self, network: DehazeNet, *args, **kwargs):
        super().__init__(network.to(memory_format=torch.channels_last), *args, **kwargs)

    @torch.inference_mode()
    def dehaze(self, image: np.ndarray) -> np.ndarray:
        x01 = to_tensor01(image, self.device)
        padded, size = pad_to_multiple(x01, PATCH, PATCH, self.io.pad_mode)
        t_grid = patch_transmission(self.network, self._normalise(padded))
        airlight = float(atmospheric_light(padded, t_grid))
        return recover(image, np.full(3, airlight, np.float32), transmission_map(t_grid, size), t_min=MIN_TRANSMISSION)


_load_network = network_factory(NETWORKS)


def factory(req: BuildRequest) -> DehazeNetDehazer:
    loaded = _load_network(req)
    dehazer = DehazeNetDehazer(loaded.network, loaded.io, req.runtime, req.algorithm, req.variant)
    dehazer.load_seconds = loaded.load_seconds
    return dehazer


factory.networks = NETWORKS  # type: ignore[attr-defined]
