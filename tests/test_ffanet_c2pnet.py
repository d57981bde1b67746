"""FFA-Net and C2PNet beyond the generic conformance test: checkpoints in the released layouts
load through the registry factory, and odd image sizes go through the Dehazer."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.network import BuildRequest
from algorithms.common.runtime import RuntimeOptions


def _released_layout(variant: str, state_dict: dict[str, torch.Tensor]) -> dict:
    """What the official training scripts save: metrics plus ``model`` (FFA-Net trained under
    nn.DataParallel, hence ``module.``; C2PNet loads its ``model`` into a bare net)."""
    prefix = "module." if variant == "ffa-net" else ""
    return {
        "step": 1,
        "max_psnr": 30.0,
        "max_ssim": 0.9,
        "psnrs": [29.0, 30.0],
        "model": {prefix + k: v for k, v in state_dict.items()},
    }


@pytest.mark.parametrize("variant, package", [("ffa-net", "ffanet"), ("c2pnet", "c2pnet")])
def test_released_layout_loads_and_dehazes_odd_sizes(variant, package, tmp_path):
    weights = algorithms.build_network(variant).state_dict()
    path = tmp_path / f"{variant}.pk"
    torch.save(_released_layout(variant, weights), path)
    factory = importlib.import_module(f"algorithms.{package}").factory
    dehazer = factory(BuildRequest(variant, "test", variant, {}, path, RuntimeOptions(device="cpu")))
    loaded = dehazer.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    image = np.random.default_rng(0).integers(0, 256, (17, 29, 3), dtype=np.uint8)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
