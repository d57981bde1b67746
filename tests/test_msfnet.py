"""MSFNet: the coarse heads match the vector's extra outputs (test_conformance checks the full-
resolution image), a checkpoint in the released layout loads strict (directly and through the
registry factory), and the Dehazer keeps odd sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import algorithms
from algorithms import msfnet
from algorithms.base import BuildRequest
from algorithms.common.checkpoint import load_state_dict_file
from algorithms.common.network import NetworkDehazer
from algorithms.common.runtime import RuntimeOptions

RUNTIME = RuntimeOptions(device="cpu", threads=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vector(conformance):
    spec, io = conformance.load_variant("msfnet")
    return spec, io, conformance.conformance_state_dict(spec)


def test_all_heads_match_vector(vector):
    spec, io, sd = vector
    net = algorithms.build_network("msfnet")
    net.load_state_dict(sd, strict=True)
    with torch.no_grad():
        outputs = net.eval().forward_scales(io["input"])
    # official order (x_out 1/4, y_out 1/2, z_out full) = io output_0, output_1, output
    for got, key in zip(outputs, ["output_0", "output_1", "output"]):
        atol = spec.get("atol_extra_outputs", {}).get(key, spec["atol"])
        assert got.shape == io[key].shape, key
        torch.testing.assert_close(got, io[key], atol=atol, rtol=spec.get("rtol", 1e-4), msg=key)


def test_return_all_is_the_official_tuple(vector):
    _, io, sd = vector
    net = msfnet.MSFNet(return_all=True)
    net.load_state_dict(sd, strict=True)
    x = io["input"][:, :, :24, :40]
    with torch.no_grad():
        tup = net.eval()(x)
        net.return_all = False
        single = net(x)
    assert [tuple(t.shape[-2:]) for t in tup] == [(6, 10), (12, 20), (24, 40)]
    assert torch.equal(tup[2], single)


@pytest.fixture(scope="module")
def released_file(vector, tmp_path_factory):
    """A checkpoint laid out like the released indoor.pth/outdoor.pth: {'epoch', 'state_dict'}."""
    _, _, sd = vector
    path = tmp_path_factory.mktemp("msfnet") / "outdoor.pth"
    torch.save({"epoch": 1, "state_dict": sd}, path)
    return path


def test_released_layout_loads_strict(vector, released_file):
    _, _, sd = vector
    loaded = load_state_dict_file(released_file, msfnet.NETWORKS["msfnet"].checkpoint)
    assert list(loaded) == list(sd)
    net = msfnet.NETWORKS["msfnet"].build()
    net.load_state_dict(loaded, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_factory_builds_dehazer(released_file):
    dehazer = msfnet.factory(BuildRequest("MSFNet", "outdoor", "msfnet", {}, released_file, RUNTIME))
    assert isinstance(dehazer, NetworkDehazer)
    assert dehazer.describe()["params"] == 1028416


@pytest.mark.parametrize("h,w", [(17, 23), (70, 101)])
def test_dehazer_odd_sizes(released_file, h, w):
    dehazer = msfnet.factory(BuildRequest("MSFNet", "outdoor", "msfnet", {}, released_file, RUNTIME))
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with torch.inference_mode():
        raw = dehazer.forward_raw(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert raw.shape == (1, 3, h, w) and torch.isfinite(raw).all()
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, dehazer(image))
