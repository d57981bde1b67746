"""Dehamer beyond the generic conformance test: the Dehazer on sizes the official code cannot take
(it needs multiples of 16), the released checkpoint layout, and the PReLU that the official MIRNet
code shares between all dual attention units."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.checkpoint import extract_state_dict
from algorithms.common.network import NetworkDehazer, load_network
from algorithms.common.runtime import RuntimeOptions
from algorithms.dehamer import NETWORKS
from algorithms.dehamer.arch import DualAttentionUnit

CPU = RuntimeOptions(device="cpu", threads=1)
IO = NETWORKS["dehamer"].io
DAU_SLOPE = re.compile(r"MSRB\d\.blocks\.\d\.0\.body\.1\.weight")
LAST_DAU_SLOPE = "MSRB4.blocks.2.0.body.1.weight"


@pytest.fixture(scope="module")
def weights(conformance) -> dict[str, torch.Tensor]:
    spec, _ = conformance.load_variant("dehamer")
    return conformance.conformance_state_dict(spec)


@pytest.fixture(scope="module")
def net(weights) -> torch.nn.Module:
    network = algorithms.build_network("dehamer")
    network.load_state_dict(weights, strict=True)
    return network.eval()


def _official_pipeline(net: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """val_data.py + test_PSNR.py: ToTensor, Normalize, forward, save_image (clamp, round)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(IO.mean).view(1, 3, 1, 1)
    std = torch.tensor(IO.std).view(1, 3, 1, 1)
    with torch.no_grad():
        y = net((x - mean) / std).clamp(0, 1)
    return (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_dehazer_matches_official_pipeline_on_multiple_of_16(net):
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = NetworkDehazer(net, IO, CPU)(image)
    assert np.abs(out.astype(int) - _official_pipeline(net, image)).max() <= 1


@pytest.mark.parametrize("shape", [(70, 101), (16, 16), (17, 45)])
def test_dehazer_takes_sizes_the_official_code_cannot(net, shape):
    """The official code crops to multiples of 16 (torch.cat fails otherwise); the Dehazer
    reflect-pads to a multiple of 16 instead and crops the output back to the input size."""
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = NetworkDehazer(net, IO, CPU)(image)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_dau_prelu_is_one_parameter_and_the_last_key_wins(net, weights):
    """MIRNet's DAU takes ``act=nn.PReLU()`` as a default argument: the 12 units of MSRB1..4 share
    one slope (the official parameter count, 132,449,787, counts it once), so a strict load leaves
    the value of the last key in the state dict."""
    units = [m for m in net.modules() if isinstance(m, DualAttentionUnit)]
    assert len(units) == 12
    assert len({id(u.body[1].weight) for u in units}) == 1
    assert sum(p.numel() for p in net.parameters()) == 132_449_787
    assert torch.equal(units[0].body[1].weight, weights[LAST_DAU_SLOPE])


def test_released_layout_loads_strict(weights):
    """Released .pt files hold a plain state dict saved from nn.DataParallel ("module.<name>").
    (Checked in memory: writing the 530 MB file would dominate the test time.)"""
    released = {f"module.{k}": v for k, v in weights.items()}
    network = load_network(NETWORKS["dehamer"], extract_state_dict(released, NETWORKS["dehamer"].checkpoint))
    loaded = network.state_dict()
    for k, v in weights.items():
        assert torch.equal(loaded[k], weights[LAST_DAU_SLOPE] if DAU_SLOPE.fullmatch(k) else v), k
