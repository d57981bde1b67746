"""Released weights of the small networks on all 100 SOTS-indoor images, and DehazeNet's
whole-image pipeline against the port's ``defog()``.

PSNR: whole RGB images in [0, 1] of the uint8 results, mean over the 100 hazy images
(hazy/<scene>_<level>.png vs gt/<scene>.png). The hazy inputs themselves score 13.69 dB;
the official code scores AOD-Net 20.62 dB and Light-DehazeNet 21.34 dB.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from algorithms import aodnet, dehazenet, lightdehazenet
from algorithms.base import BuildRequest
from algorithms.common.checkpoint import load_state_dict_file
from algorithms.common.quality import psnr
from algorithms.common.runtime import RuntimeOptions
from algorithms.common.scattering import recover

HAZY_MEAN_PSNR = 13.69
CASES = {
    # arch: (algorithm package, weights file under shared/weights, minimum mean PSNR)
    "aod-net": (aodnet, "aod-net/dehazer.pth", 20.45),
    "light-dehazenet": (lightdehazenet, "light-dehazenet/trained_LDNet.pth", 21.15),
    "dehazenet": (dehazenet, "dehazenet/defog4_noaug.pth", HAZY_MEAN_PSNR),
}
RUNTIME = RuntimeOptions(device="cpu", threads=2)


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def sots_indoor(shared_dir) -> list[tuple[np.ndarray, np.ndarray]]:
    root = shared_dir / "data" / "sots-indoor"
    hazy = sorted((root / "hazy").glob("*.png"))
    assert len(hazy) == 100
    gt = {p.stem: _rgb(p) for p in (root / "gt").glob("*.png")}
    return [(_rgb(p), gt[p.stem.split("_")[0]]) for p in hazy]


def _build(arch: str, shared_dir):
    package, weights, _ = CASES[arch]
    return package.factory(BuildRequest(arch, "default", arch, {}, shared_dir / "weights" / weights, RUNTIME))


@pytest.mark.parametrize("arch", sorted(CASES))
def test_released_weights_load_strict(arch, shared_dir):
    package, weights, _ = CASES[arch]
    spec = package.NETWORKS[arch]
    net = spec.build()
    net.load_state_dict(load_state_dict_file(shared_dir / "weights" / weights, spec.checkpoint), strict=True)


@pytest.mark.parametrize("arch", sorted(CASES))
def test_sots_indoor_mean_psnr(arch, shared_dir, sots_indoor):
    minimum = CASES[arch][2]
    dehazer = _build(arch, shared_dir)
    start = time.perf_counter()
    scores = [psnr(dehazer(hazy), gt) for hazy, gt in sots_indoor]
    mean = float(np.mean(scores))
    print(f"\n{arch}: mean PSNR {mean:.2f} dB on {len(scores)} SOTS-indoor images "
          f"(hazy {HAZY_MEAN_PSNR} dB) in {time.perf_counter() - start:.1f} s")
    assert mean > HAZY_MEAN_PSNR
    assert mean >= minimum


@pytest.mark.parametrize("arch", sorted(CASES))
def test_odd_sizes_keep_shape(arch, shared_dir):
    dehazer = _build(arch, shared_dir)
    rng = np.random.default_rng(0)
    for h, w in [(16, 16), (37, 53), (61, 16)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = dehazer(image)
        assert out.shape == image.shape and out.dtype == np.uint8


# --- DehazeNet pipeline vs the port's defog() (io_trained: real weights) -------------------------


@pytest.fixture(scope="module")
def defog_reference(shared_dir):
    return load_file(str(shared_dir / "conformance" / "dehazenet" / "io_trained.safetensors"))


@pytest.fixture(scope="module")
def trained_dehazenet(shared_dir):
    return _build("dehazenet", shared_dir)


def _uint8(x01_chw: torch.Tensor) -> np.ndarray:
    return np.clip(x01_chw.permute(1, 2, 0).numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)


def test_defog_transmission_and_airlight(trained_dehazenet, defog_reference):
    """160x160 (100 patches): the port's t per patch, in its loop order, and A."""
    image = defog_reference["image2"][None]
    with torch.inference_mode():
        t_grid = dehazenet.patch_transmission(trained_dehazenet.network, trained_dehazenet._normalise(image))
    torch.testing.assert_close(t_grid.t().reshape(-1, 1), defog_reference["t2"], atol=1e-6, rtol=0)
    assert float(dehazenet.atmospheric_light(image, t_grid)) == pytest.approx(float(defog_reference["A2"]), abs=1e-6)


@pytest.mark.parametrize("case", ["2", ""])
def test_defog_inversion(trained_dehazenet, defog_reference, case):
    """J = (I - A(1-t))/t per patch equals the port's result (clamped, as uint8): the 160x160
    case with its A, and the 64x64 one where the port used A = 0 (fewer than 100 patches)."""
    if case == "2":
        image = defog_reference["image2"][None]
    else:
        mean = torch.tensor(dehazenet.NETWORKS["dehazenet"].io.mean).view(1, 3, 1, 1)
        std = torch.tensor(dehazenet.NETWORKS["dehazenet"].io.std).view(1, 3, 1, 1)
        image = defog_reference["input_dense"] * std + mean
    with torch.inference_mode():
        t_grid = dehazenet.patch_transmission(trained_dehazenet.network, trained_dehazenet._normalise(image))
    airlight = float(defog_reference["A" + case])
    image255 = image[0].permute(1, 2, 0).numpy() * 255.0
    ours = recover(image255, np.full(3, airlight, np.float32), dehazenet.transmission_map(t_grid, image.shape[-2:]))
    diff = np.abs(ours.astype(int) - _uint8(defog_reference["dehazed" + case]).astype(int))
    assert diff.max() <= 1


def test_dehazenet_vector_patches_and_dense(conformance):
    """The dehazenet vector holds two alternative inputs: the 16x16 patch batch ('input') and
    the whole image ('input_dense', fully convolutional); plus conv5's pre-BReLU outputs."""
    spec, io = conformance.load_variant("dehazenet")
    net = dehazenet.NETWORKS["dehazenet"].build()
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    preact = []
    net.conv5.register_forward_hook(lambda _m, _i, out: preact.append(out.reshape(out.shape[0], -1)))
    atol = spec["atol_extra_outputs"]
    with torch.no_grad():
        torch.testing.assert_close(net(io["input"]), io["output"], atol=spec["atol"], rtol=spec["rtol"])
        torch.testing.assert_close(preact.pop(), io["output_preact"], atol=atol["output_preact"], rtol=spec["rtol"])
        torch.testing.assert_close(net(io["input_dense"]), io["output_dense"],
                                   atol=atol["output_dense"], rtol=spec["rtol"])
        torch.testing.assert_close(preact.pop(), io["output_dense_preact"],
                                   atol=atol["output_dense_preact"], rtol=spec["rtol"])
        out64 = net.double()(io["input"].double())
    torch.testing.assert_close(out64, io["output_fp64"], atol=spec["atol_fp64"], rtol=1e-7)
