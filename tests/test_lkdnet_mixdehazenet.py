"""LKD-Net and MixDehazeNet beyond the conformance vectors: the released LKD-Net weights
reach their published quality on SOTS-indoor, and odd image sizes go through the Dehazer."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.checkpoint import load_into, load_state_dict_file
from algorithms.common.network import NetworkDehazer
from algorithms.common.runtime import RuntimeOptions
from algorithms.lkdnet import NETWORKS as LKD_NETWORKS
from algorithms.mixdehazenet import NETWORKS as MIX_NETWORKS

#: (checkpoint under shared/weights/lkdnet, minimum mean PSNR; the official code gives 35.74 / 38.06)
RELEASED = {
    "lkdnet-t": ("ITS/LKD-t/LKD-t.pth", 35.6),
    "lkdnet-s": ("ITS/LKD-s/LKD-s.pth", 37.9),
}


def _read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


@pytest.mark.parametrize("variant", sorted(RELEASED))
def test_released_lkdnet_weights_psnr_on_sots_indoor(variant, shared_dir):
    """All 100 SOTS-indoor hazy images, whole 620x460 RGB, uint8 output, strict checkpoint load."""
    rel_path, minimum = RELEASED[variant]
    spec = LKD_NETWORKS[variant]
    net = spec.build()
    load_into(net, load_state_dict_file(shared_dir / "weights" / "lkdnet" / rel_path, spec.checkpoint))
    # IOFacts.channels_last: ~20% faster on CPU for the depthwise convolutions, same results
    dehazer = NetworkDehazer(net, spec.io, RuntimeOptions(device="cpu", threads=2))

    data = shared_dir / "data" / "sots-indoor"
    hazy = sorted((data / "hazy").glob("*.png"))
    assert len(hazy) == 100
    started = time.perf_counter()
    scores = [_psnr(dehazer(_read_rgb(p)), _read_rgb(data / "gt" / f"{p.stem.split('_')[0]}.png")) for p in hazy]
    mean = float(np.mean(scores))
    print(f"{variant}: mean PSNR {mean:.3f} dB over {len(scores)} images ({time.perf_counter() - started:.1f} s)")
    assert mean >= minimum


@pytest.mark.parametrize("variant", ["lkdnet-t", "mixdehazenet-t"])
@pytest.mark.parametrize("size", [(17, 29), (45, 62)])
def test_odd_sizes_keep_shape(variant, size):
    """Sizes that are not multiples of 4 are padded and cropped back (random weights suffice)."""
    spec = {**LKD_NETWORKS, **MIX_NETWORKS}[variant]
    torch.manual_seed(0)
    dehazer = NetworkDehazer(algorithms.build_network(variant), spec.io, RuntimeOptions(device="cpu"))
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
