"""IR-SDE (Luo et al., ICML 2023): image restoration by a mean-reverting SDE, sampled in
``steps`` network evaluations from a fixed ``seed``.

A sampler does not fit ``NetworkDehazer``'s one-forward pipeline, so this package has its own
Dehazer (:class:`SDEDehazer`, reused by DA-CLIP). Registry params (all optional):

- ``steps``  network evaluations per image (default 100 = the official T; fewer is faster)
- ``seed``   seed of the initial noise and of every sampling step (default 0)
- ``max_sigma``, ``T``, ``schedule``, ``eps``  the SDE, as in the official option files
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from algorithms.base import BuildRequest, Dehazer
from algorithms.common.checkpoint import CheckpointFacts, load_into, load_state_dict_file
from algorithms.common.network import to_tensor01, to_uint8
from algorithms.common.padding import tiled_apply
from algorithms.common.runtime import RuntimeOptions, resolve_device
from algorithms.errors import UnknownVariantError, WeightsUnavailableError
from algorithms.irsde.arch import ConditionalUNet, MeanRevertingSDE

PAPER = (
    "Luo, Gustafsson, Zhao, Sjolund, Schon. Image Restoration with Mean-Reverting Stochastic "
    "Differential Equations. ICML 2023, arXiv:2301.11699"
)

#: network constructors of the released checkpoints (official option files: in_nc 3, out_nc 3,
#: nf 64, depth 4)
ARCHS: dict[str, Callable[[], torch.nn.Module]] = {
    "irsde": partial(ConditionalUNet, in_nc=3, out_nc=3, nf=64, depth=4),
}

#: the official training code saves a bare state dict (DataParallel's ``module.`` removed)
CHECKPOINT = CheckpointFacts(unwrap=("state_dict", "params"), strip_prefixes=("module.",))


@dataclass(frozen=True)
class SamplerParams:
    """The SDE and how to sample it; every field is a registry param."""

    max_sigma: float = 10.0
    T: int = 100
    schedule: str = "cosine"
    eps: float = 0.005
    steps: int = 100
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "SamplerParams":
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        return cls(**known)

    def sde(self) -> MeanRevertingSDE:
        return MeanRevertingSDE(self.max_sigma, self.T, self.schedule, self.eps)


class SDEDehazer(Dehazer):
    """Restores an image by sampling a mean-reverting SDE whose mean is the hazy image.

    ``model(x, mu, t)`` predicts the noise in state ``x`` at time step ``t``. The noise
    generator is re-seeded for every image (and every tile), so a fixed seed gives the same
    output for the same input. Images larger than the runtime's tile size are restored in
    overlapping tiles.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        modules: torch.nn.Module,
        sampler: SamplerParams,
        runtime: RuntimeOptions = RuntimeOptions(),
    ):
        self.device = resolve_device(runtime.device)
        self.runtime = runtime
        self.modules = modules.eval().to(self.device)
        for p in self.modules.parameters():
            p.requires_grad_(False)
        self.model = model
        self.sampler = sampler
        self.sde = sampler.sde()
        self.sde.timesteps(sampler.steps)  # validates steps against T now, not at the first request
        if runtime.threads:
            torch.set_num_threads(runtime.threads)

    def restore(self, x01: torch.Tensor) -> torch.Tensor:
        """[0,1] N x 3 x H x W -> restored [0,1] (unclamped), deterministic for the seed."""
        generator = torch.Generator(device=x01.device).manual_seed(self.sampler.seed)
        return self.sde.sample(self.model, x01, self.sampler.steps, generator)

    @torch.inference_mode()
    def dehaze(self, image: np.ndarray) -> np.ndarray:
        x01 = to_tensor01(image, self.device)
        tile = self.runtime.tile_size
        if tile and max(x01.shape[-2:]) > tile:
            y = tiled_apply(self.restore, x01, tile, self.runtime.tile_overlap)
        else:
            y = self.restore(x01)
        return to_uint8(y)

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "params": sum(p.numel() for p in self.modules.parameters()),
            "steps": self.sampler.steps,
            "seed": self.sampler.seed,
        }


def load_checkpoint(net: torch.nn.Module, path, what: str) -> None:
    """Strict load of an official IR-SDE checkpoint into ``net``."""
    load_into(net, load_state_dict_file(path, CHECKPOINT), what=what)


def factory(req: BuildRequest) -> SDEDehazer:
    arch = req.arch or "irsde"
    if arch not in ARCHS:
        raise UnknownVariantError(f"{req.algorithm}/{req.variant}: arch {arch!r} is not one of {sorted(ARCHS)}")
    if req.weights_path is None:
        raise WeightsUnavailableError(f"{req.algorithm}/{req.variant}: no weights path in the registry")
    t0 = time.perf_counter()
    net = ARCHS[arch]()
    load_checkpoint(net, req.weights_path, f"{req.algorithm}/{req.variant} checkpoint")
    dehazer = SDEDehazer(net, net, SamplerParams.from_params(req.params), req.runtime or RuntimeOptions())
    dehazer.load_seconds = time.perf_counter() - t0
    return dehazer
