"""RIDCP and SGID-PFF beyond the generic conformance test: RIDCP's codebook indices and
integer buffers, SGID-PFF's intermediate stages, odd image sizes through the Dehazer, and
determinism. Everything runs on the public 64x64 vectors or smaller images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import algorithms
from algorithms.common.checkpoint import extract_state_dict
from algorithms.common.network import NetworkDehazer
from algorithms.common.runtime import RuntimeOptions
from algorithms.ridcp import NETWORKS as RIDCP_NETWORKS
from algorithms.ridcp.swin import shifted_window_mask
from algorithms.sgidpff import NETWORKS as SGID_NETWORKS


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _loaded(conformance, variant: str):
    spec, io = conformance.load_variant(variant)
    net = algorithms.build_network(variant)
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    return spec, io, net.eval()


@pytest.fixture(scope="module")
def ridcp(conformance):
    return _loaded(conformance, "ridcp")


@pytest.fixture(scope="module")
def sgid(conformance):
    return _loaded(conformance, "sgid-pff")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- RIDCP -----------------------------------------------------------------------------------


def test_ridcp_codebook_indices_and_image_match_vector(ridcp):
    spec, io, net = ridcp
    with torch.no_grad():
        image, indices = net(io["input"])
    assert len(indices) == 1
    assert torch.equal(indices[0], io["output_indices"])
    torch.testing.assert_close(image, io["output"], atol=spec["atol"], rtol=spec["rtol"])


def test_ridcp_integer_buffers_equal_the_official_ones(conformance, shared_dir):
    spec, _ = conformance.load_variant("ridcp")
    official = load_file(str(shared_dir / "conformance" / "ridcp" / "int_buffers.safetensors"))
    own = RIDCP_NETWORKS["ridcp"].build().state_dict()
    assert set(official) == set(spec["int_buffers"])
    for key, value in official.items():
        assert torch.equal(own[key], value), key


def test_ridcp_stored_attention_masks_are_the_shifted_window_masks():
    net = RIDCP_NETWORKS["ridcp"].build()
    masks = {k: v for k, v in net.state_dict().items() if k.endswith("attn_mask")}
    assert len(masks) == 4 * 3  # 4 RSTBs x 3 shifted blocks
    expected = shifted_window_mask((32, 32), window=8, shift=4)
    for key, mask in masks.items():
        assert torch.equal(mask, expected), key


def test_ridcp_checkpoint_without_chm_weight_loads_with_neutral_matching():
    net = RIDCP_NETWORKS["ridcp"].build()
    released = {k: v for k, v in net.state_dict().items() if k != "quantize_group.0.weight"}
    sd = extract_state_dict({"params": released}, RIDCP_NETWORKS["ridcp"].checkpoint)
    net.load_state_dict(sd, strict=True)
    assert torch.equal(net.quantize_group[0].weight, torch.zeros(1024))


@pytest.mark.parametrize("size", [(37, 53), (64, 31)])
def test_ridcp_odd_sizes_through_dehazer(ridcp, size):
    _, _, net = ridcp
    dehazer = NetworkDehazer(net, RIDCP_NETWORKS["ridcp"].io, RuntimeOptions(device="cpu"))
    image = _image(*size)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, dehazer(image)), "two runs differ"


# --- SGID-PFF ---------------------------------------------------------------------------------


def test_sgid_stages_match_vector(sgid):
    spec, io, net = sgid
    with torch.no_grad():
        stages = net.stages(io["input"])
    tol = spec["atol_extra_outputs"]
    torch.testing.assert_close(stages.output, io["output"], atol=spec["atol"], rtol=spec["rtol"])
    torch.testing.assert_close(stages.pre_dehazed, io["output_0"], atol=tol["output_0"], rtol=spec["rtol"])
    torch.testing.assert_close(stages.trans, io["output_2"], atol=tol["output_2"], rtol=spec["rtol"])
    assert torch.equal(stages.air, torch.ones_like(io["input"]))


@pytest.mark.parametrize("size", [(37, 53), (18, 101)])
def test_sgid_odd_sizes_through_dehazer(sgid, size):
    _, _, net = sgid
    dehazer = NetworkDehazer(net, SGID_NETWORKS["sgid-pff"].io, RuntimeOptions(device="cpu"))
    image = _image(*size, seed=1)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, dehazer(image)), "two runs differ"
