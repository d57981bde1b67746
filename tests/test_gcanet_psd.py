"""GCANet and PSD beyond the generic conformance test.

- GCANet's released checkpoint loads strict through the registry factory, reproduces the
  official output on the public input, and restores every 4th SOTS-indoor hazy image (25 of
  the 100) above 31.4 dB (31.08 dB over all 100, = the official code, was measured once).
- The edge-map pre-processing rebuilds the official 4-channel input.
- PSD-FFANet's physics outputs (features, T, A, I) match the official tuple.
- PSD checkpoints in the released layout (DataParallel ``module.`` prefix) load through the factory.
- Odd image sizes go through the Dehazer and come back with the same shape.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import algorithms
import algorithms.gcanet
import algorithms.psd
from algorithms.common.network import BuildRequest, NetworkDehazer
from algorithms.common.runtime import RuntimeOptions
from algorithms.gcanet.preprocess import PIXEL_SHIFT, edge_map, network_input

CPU = RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def gcanet_released(shared_dir) -> NetworkDehazer:
    path = shared_dir / "weights" / "gcanet" / "wacv_gcanet_dehaze.pth"
    request = BuildRequest("GCANet", "dehaze", "gcanet", {}, path, RuntimeOptions())
    return algorithms.gcanet.factory(request)


def _conformance_network(conformance, variant: str) -> torch.nn.Module:
    spec, _ = conformance.load_variant(variant)
    net = algorithms.build_network(variant)
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    return net.eval()


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


def test_edge_map_rebuilds_the_official_input(conformance):
    _, io = conformance.load_variant("gcanet")
    edges = edge_map(io["pre_image"]) - PIXEL_SHIFT
    torch.testing.assert_close(edges, io["input"][:, 3:], atol=1e-4, rtol=0)
    torch.testing.assert_close(network_input(io["input"][:, :3]), io["input"], atol=1e-4, rtol=0)


def test_gcanet_released_checkpoint_reproduces_official_output(gcanet_released, shared_dir):
    io = load_file(str(shared_dir / "conformance" / "gcanet" / "io_released.safetensors"))
    device = gcanet_released.device
    with torch.inference_mode():
        residual = gcanet_released.network(io["input"].to(device)).cpu()
        restored = gcanet_released.network(io["input"].to(device), io["pre_image"].to(device)).cpu()
    torch.testing.assert_close(residual, io["output"], atol=2e-3, rtol=0)
    torch.testing.assert_close(restored, io["output"] + io["pre_image"], atol=2e-3, rtol=0)


#: every 4th of the 100 SOTS-indoor hazy images (25, 23 scenes). Over all 100 this implementation
#: gives 31.079 dB, the official code 31.08 (shared/weights/SOURCE.md; measured 2026-12-03 with
#: the loop below over all images, 200 s on 2 cores); on this subset it gives 31.57 dB. The whole
#: 100 cost too much of the suite's 15 minutes, and the network itself is checked against the
#: official output (test above); this checks the whole pipeline on real images (edge channel,
#: padding, rounding), e.g. it caught channels-last kernels costing 0.4 dB.
QUALITY_SUBSET_STEP, QUALITY_SUBSET_MIN_DB = 4, 31.4


@pytest.mark.slow
def test_gcanet_released_quality_on_sots_indoor(gcanet_released, shared_dir):
    data = shared_dir / "data" / "sots-indoor"
    hazy_paths = sorted((data / "hazy").glob("*.png"))
    assert len(hazy_paths) == 100
    start = time.perf_counter()
    scores = []
    for hazy_path in hazy_paths[::QUALITY_SUBSET_STEP]:
        scene = hazy_path.stem.split("_")[0]
        restored = gcanet_released(_read_rgb(hazy_path))
        scores.append(_psnr(restored, _read_rgb(data / "gt" / f"{scene}.png")))
    mean = float(np.mean(scores))
    print(f"GCANet SOTS-indoor mean PSNR over {len(scores)} images: {mean:.2f} dB "
          f"(this code: 31.57 on the subset, 31.08 on all 100 = official) in {time.perf_counter() - start:.0f} s")
    assert len(scores) == 25 and mean >= QUALITY_SUBSET_MIN_DB


@pytest.mark.parametrize("size", [(37, 53), (16, 90)])
def test_gcanet_dehazer_keeps_odd_sizes(gcanet_released, size):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = gcanet_released(image)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_psd_ffanet_physics_outputs_match_official_tuple(conformance):
    spec, io = conformance.load_variant("psd-ffanet")
    net = _conformance_network(conformance, "psd-ffanet")
    with torch.inference_mode():
        features, out_j, out_t, out_a, out_i = net(io["input"], io["input_A"], all_outputs=True)
    atol, rtol = spec["atol"], spec["rtol"]
    torch.testing.assert_close(out_j, io["output"], atol=atol, rtol=rtol)
    torch.testing.assert_close(features, io["output_0"], atol=atol, rtol=rtol)
    torch.testing.assert_close(out_t, io["output_2"], atol=atol, rtol=rtol)
    torch.testing.assert_close(out_a, io["output_3"], atol=atol, rtol=rtol)
    # I = T * J + (1 - T) * A reaches |I| ~ 1.5e3 under the synthetic weights
    torch.testing.assert_close(out_i, io["output_4"], atol=atol * 1e3 / 57, rtol=rtol)


@pytest.mark.parametrize("variant", ["psd-ffanet", "psd-gcanet"])
def test_psd_released_layout_loads_through_factory(variant, tmp_path):
    net = algorithms.build_network(variant)
    # the official test wraps the net in nn.DataParallel and saves its state dict
    path = tmp_path / variant.upper()
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    request = BuildRequest("PSD", variant, variant, {}, path, CPU)
    dehazer = algorithms.psd.factory(request)
    loaded = dehazer.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    image = np.random.default_rng(1).integers(0, 256, (19, 34, 3), dtype=np.uint8)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
