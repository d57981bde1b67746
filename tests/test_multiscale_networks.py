"""GridDehazeNet, DEA-Net and MSBDN through the Dehazer: sizes the networks cannot take
themselves (DEA-Net needs multiples of 4, MSBDN multiples of 16 and at least 32) are padded and
cropped back, and a size the network accepts as is gives exactly the bare network's output.
Weights: the deterministic conformance rule (the released checkpoints are not available here).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.network import NetworkDehazer, find_network, to_uint8

VARIANTS = ["griddehazenet", "dea-net", "msbdn"]


@pytest.fixture(scope="module", params=VARIANTS)
def dehazer(request, conformance):
    torch.set_num_threads(2)
    spec, _ = conformance.load_variant(request.param)
    net = algorithms.build_network(request.param)
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    return NetworkDehazer(net, find_network(request.param).io, algorithm=request.param)


def test_odd_sizes_keep_shape(dehazer):
    rng = np.random.default_rng(1)
    for h, w in [(16, 16), (37, 53)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = dehazer(image)
        assert out.shape == image.shape and out.dtype == np.uint8


def test_unpadded_size_matches_bare_network(dehazer):
    image = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    lo, hi = dehazer.io.input_range
    with torch.inference_mode():
        expected = to_uint8(dehazer.network(x * (hi - lo) + lo).clamp(0, 1))
    np.testing.assert_array_equal(dehazer(image), expected)
