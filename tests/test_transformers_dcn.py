"""AECR-Net and MB-TaylorFormer beyond the conformance vectors: odd-size images through the
Dehazer (IOFacts padding + crop), determinism, the official checkpoint layouts, and the
deformable-convolution / deconvolution building blocks against their definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import algorithms
from algorithms.aecrnet.arch import FastDeconv, ModulatedDeformConv
from algorithms.common.checkpoint import load_into, load_state_dict_file
from algorithms.common.network import NetworkDehazer, find_network
from algorithms.common.runtime import RuntimeOptions

VARIANTS = ["aecr-net", "mb-taylorformer-b", "mb-taylorformer-l"]


def _conformance_network(variant, conformance):
    spec, _ = conformance.load_variant(variant)
    net = algorithms.build_network(variant)
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    return spec, net.eval()


@pytest.fixture
def one_thread():
    """Small inputs run many tiny ops: one thread avoids OpenMP overhead on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("variant", VARIANTS)
def test_odd_size_image_through_dehazer(variant, conformance, one_thread):
    _, net = _conformance_network(variant, conformance)
    io = find_network(variant).io
    dehazer = NetworkDehazer(net, io, RuntimeOptions(device="cpu"))
    image = np.random.default_rng(0).integers(0, 256, size=(29, 43, 3), dtype=np.uint8)

    with torch.inference_mode():
        raw = dehazer.forward_raw(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert raw.shape == (1, 3, 29, 43)
    assert torch.isfinite(raw).all()

    first = dehazer(image)
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, dehazer(image))


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_spec(variant, conformance):
    spec, _ = conformance.load_variant(variant)
    net = algorithms.build_network(variant)
    assert sum(p.numel() for p in net.parameters()) == spec["num_params"]


@pytest.mark.parametrize(
    "variant, wrap",
    [
        # train_aecrnet.py: {"model": DataParallel state dict, ...}
        ("aecr-net", lambda sd: {"epoch": 1, "max_psnr": 0.0, "model": {f"module.{k}": v for k, v in sd.items()}}),
        # basicsr: {"params": state dict}
        ("mb-taylorformer-b", lambda sd: {"params": dict(sd)}),
    ],
)
def test_official_checkpoint_layout_loads_strict(variant, wrap, tmp_path):
    spec = find_network(variant)
    reference = spec.build().state_dict()
    path = tmp_path / "released.pth"
    torch.save(wrap(reference), path)
    net = spec.build()
    load_into(net, load_state_dict_file(path, spec.checkpoint))
    for key, value in net.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_dcn_with_zero_offsets_is_half_masked_conv():
    """Official init: conv_offset_mask is zero, so offsets are 0 and the mask is sigmoid(0)."""
    torch.manual_seed(0)
    dcn = ModulatedDeformConv(8, 6)
    x = torch.randn(1, 8, 9, 11)
    expected = 0.5 * F.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x), expected, atol=1e-5, rtol=1e-5)


def test_dcn_integer_offset_shifts_sampling():
    """A +1 x-offset on every tap samples one pixel to the right (zero outside the image)."""
    torch.manual_seed(0)
    dcn = ModulatedDeformConv(4, 4)
    with torch.no_grad():
        bias = dcn.conv_offset_mask.bias
        bias[9:18] = 1.0  # second offset half: odd channels are x offsets
        bias[18:] = 50.0  # mask ~ 1
    x = torch.randn(1, 4, 7, 8)
    offset_x_only = torch.zeros(18)
    offset_x_only[1::2] = 1.0
    with torch.no_grad():
        bias[:18] = offset_x_only
    # out[h, w] = sum_ij W[i, j] x[h + i - 1, w + j]: pad 1 row top/bottom, 2 columns right
    expected = F.conv2d(F.pad(x, (0, 2, 1, 1)), dcn.weight, dcn.bias)
    torch.testing.assert_close(dcn(x), expected, atol=1e-4, rtol=1e-4)


def test_fast_deconv_folds_patch_whitening():
    """Eval FastDeconv == conv of the im2col patches whitened by (running_deconv, running_mean)."""
    torch.manual_seed(0)
    layer = FastDeconv(3, 3, kernel_size=3, padding=1)
    with torch.no_grad():
        layer.running_mean.copy_(0.1 * torch.randn(27))
        layer.running_deconv.copy_(torch.eye(27) + 0.1 * torch.randn(27, 27))
    x = torch.randn(1, 3, 6, 5)
    patches = F.unfold(x, 3, padding=1)  # 1 x 27 x L
    whitened = layer.running_deconv @ (patches - layer.running_mean.view(1, -1, 1))
    expected = (layer.weight.view(3, 27) @ whitened + layer.bias.view(1, -1, 1)).view(1, 3, 6, 5)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
