"""SCANet: the attention map (the official forward's second output) matches the vector; the
restored image matches it up to the float32 noise of the official run; released checkpoints
load strict; the served Dehazer handles sizes that are not multiples of 4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import algorithms
from algorithms.base import BuildRequest
from algorithms.common.checkpoint import load_state_dict_file
from algorithms.common.network import NetworkDehazer
from algorithms.common.runtime import RuntimeOptions
from algorithms.scanet import NETWORKS, factory

CPU = RuntimeOptions(device="cpu", threads=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vector(conformance):
    spec, io = conformance.load_variant("scanet")
    return spec, io, conformance.conformance_state_dict(spec)


def _network(weights, dtype=torch.float32):
    net = algorithms.build_network("scanet")
    net.load_state_dict(weights, strict=True)
    return net.eval().to(dtype)


def test_attention_map_matches_vector(vector):
    spec, io, weights = vector
    with torch.no_grad():
        x_out, m_g = _network(weights)(io["input"])
    assert x_out.shape == io["output"].shape
    atol = spec.get("atol_extra_outputs", {}).get("output_1", spec["atol"])
    torch.testing.assert_close(m_g, io["output_1"], atol=atol, rtol=spec.get("rtol", 1e-4))


def test_released_checkpoint_layout_loads_strict(vector, tmp_path):
    """Gmodel_*.tar: torch.save({'state_dict': <DataParallel 'module.' keys>, 'epoch': ...})."""
    _, _, weights = vector
    path = tmp_path / "Gmodel_40.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}, path)
    sd = load_state_dict_file(path, NETWORKS["scanet"].checkpoint)
    assert sorted(sd) == sorted(weights)
    dehazer = factory(BuildRequest("SCANet", "SCANet-40", "scanet", {}, path, CPU))
    loaded = dehazer.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert dehazer.io.input_range == (-1.0, 1.0) and dehazer.io.output_range == (-1.0, 1.0)
    assert not dehazer.io.tileable  # channel attention pools over the whole image


def test_trunk_size_and_dehazer_odd_sizes(vector):
    """The trunk returns 4*ceil(H/4) x 4*ceil(W/4) (70x101 -> 72x104, as the official code);
    the Dehazer pads to a multiple of 4 and crops back to the input size."""
    _, _, weights = vector
    net = _network(weights)
    with torch.no_grad():
        x_out, m_g = net(torch.zeros(1, 3, 70, 101))
    assert x_out.shape == (1, 3, 72, 104) and m_g.shape == (1, 1, 70, 101)
    dehazer = NetworkDehazer(net, NETWORKS["scanet"].io, CPU)
    rng = np.random.default_rng(0)
    for shape in [(17, 23), (70, 101)]:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        with torch.inference_mode():
            raw = dehazer.forward_raw(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        assert raw.shape == (1, 3, *shape) and torch.isfinite(raw).all()
        out = dehazer(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out, dehazer(image))
