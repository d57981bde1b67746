"""CMFNet, D4, DCPDN, FogRemoval, MADN: what the generic conformance test does not cover.

Extra outputs against the vectors, D4's guided-filter test path, odd image sizes through the
Dehazer, and the remapping of DCPDN's PyTorch-0.3 checkpoint keys.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import algorithms
from algorithms.common.network import NetworkDehazer, find_network


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(2)


_LOADED: dict[str, tuple[torch.nn.Module, dict, dict]] = {}


def _loaded(variant: str, conformance):
    """Bare network with the conformance weights (built once per test session)."""
    if variant not in _LOADED:
        spec, io = conformance.load_variant(variant)
        net = algorithms.build_network(variant)
        net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
        _LOADED[variant] = (net.eval(), spec, io)
    return _LOADED[variant]


def _assert_close(got: torch.Tensor, expected: torch.Tensor, atol: float):
    torch.testing.assert_close(got.to(expected.dtype), expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("variant", ["cmfnet", "fogremoval", "dcpdn", "d4"])
def test_extra_outputs_match_vector(variant, conformance):
    net, spec, io = _loaded(variant, conformance)
    with torch.no_grad():
        outs = net(io["input"])
    extra_atol = spec.get("atol_extra_outputs", {})
    checked = 0
    for k, out in enumerate(outs):
        key = f"output_{k}"
        if k and key in io:
            _assert_close(out, io[key], extra_atol.get(key, spec["atol"]))
            checked += 1
    assert checked == len([k for k in io if k.startswith("output_") and not k.endswith("fp64")])


def test_d4_guided_filter_path(conformance, shared_dir):
    """Official test path for data sets other than SOTS-indoor: dark-channel atmospheric light
    and guided-filter refinement of t (io_others.safetensors)."""
    from safetensors.torch import load_file

    net, spec, _ = _loaded("d4", conformance)
    io = load_file(str(shared_dir / "conformance" / "d4" / "io_others.safetensors"))
    net.use_dc_A = True
    try:
        with torch.no_grad():
            clean, t = net(io["input"], use_guided_filter=True)
    finally:
        net.use_dc_A = False
    atol = spec["io_others_stats"]["atol"]
    _assert_close(clean, io["output"], atol)
    _assert_close(t, io["output_1"], atol)


@pytest.mark.parametrize("variant", ["cmfnet", "fogremoval", "dcpdn", "d4"])
def test_odd_size_through_dehazer(variant, conformance):
    net, _, _ = _loaded(variant, conformance)
    image = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    out = NetworkDehazer(net, find_network(variant).io)(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    # not a constant image: the network output went through its value mapping
    assert out.std() > 0


def test_dcpdn_remap_of_released_key_names(conformance):
    """netG_epoch_8.pth was saved by PyTorch 0.3.1 with torchvision 0.2 dense-layer names
    ('norm.1', 'conv.2') and without BatchNorm 'num_batches_tracked' counters."""
    import re

    spec, _ = conformance.load_variant("dcpdn")
    ours = [key for key, _, _ in spec["state_dict"]]
    released = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): torch.zeros(1)
        for key in ours
        if not key.endswith("num_batches_tracked")
    }
    assert any(".norm.1." in key for key in released) and any(".conv.2." in key for key in released)
    remap = find_network("dcpdn").checkpoint.remap
    remapped = remap(released)
    assert sorted(remapped) == sorted(ours)
    assert all(remapped[k].dtype == torch.int64 for k in ours if k.endswith("num_batches_tracked"))
