"""The generative restorers (IR-SDE, DA-CLIP), which have no conformance vectors.

What is checked instead: the official-size network has the parameter layout of the authors'
released checkpoints (key prefixes, counts, total size), a checkpoint saved the way the official
training code saves it loads strictly, the SDE sampler's algebra (an oracle noise predictor gives
back the clean image), and the Dehazer on the shared images with deterministic weights: shape,
finite output, determinism under a fixed seed, odd sizes, a small configurable step count, and
the whole path through ``algorithms.registry.create``. Small widths come only from the network
constructor arguments; sampling uses 2-4 steps, so every test takes a few seconds on CPU.
"""
from __future__ import annotations

from collections import Counter
from functools import partial

import cv2
import numpy as np
import pytest
import torch

import algorithms.daclip as daclip
import algorithms.irsde as irsde
from algorithms.common.checkpoint import CheckpointFormatError, load_into, load_state_dict_file
from algorithms.daclip import DaCLIPDehazer, clip_preprocess
from algorithms.daclip.arch import DaCLIPImageEncoder, DaclipConditionalUNet
from algorithms.irsde import SamplerParams, SDEDehazer, load_checkpoint
from algorithms.irsde.arch import ConditionalUNet, MeanRevertingSDE
from algorithms.registry import create, parse_registry

SMALL_UNET = partial(ConditionalUNet, in_nc=3, out_nc=3, nf=16, depth=3)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _seeded(build, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build().eval()


@pytest.fixture(scope="module")
def hazy(shared_dir) -> np.ndarray:
    """A real hazy photo from the shared images, downscaled to 48 x 64."""
    image = cv2.cvtColor(cv2.imread(str(shared_dir / "data" / "real-hazy" / "canyon.png")), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (64, 48), interpolation=cv2.INTER_AREA)


# --- IR-SDE: checkpoint layout -------------------------------------------------------------


def test_irsde_official_network_matches_the_released_checkpoint_layout():
    with torch.device("meta"):
        net = irsde.ARCHS["irsde"]()
    sd = net.state_dict()
    prefixes = Counter(k.split(".")[0] for k in sd)
    assert prefixes == {
        "init_conv": 1, "time_mlp": 4, "downs": 59, "ups": 67, "mid_block1": 4, "mid_attn": 4,
        "mid_block2": 4, "final_res_block": 5, "final_conv": 2,
    }
    assert len(sd) == 150
    # 137,146,499 float32 values: the legacy table's 523.23 MB (MiB) for every RGB IR-SDE file
    assert sum(v.numel() for v in sd.values()) == 137_146_499
    assert tuple(sd["init_conv.weight"].shape) == (64, 6, 7, 7)
    assert tuple(sd["mid_attn.fn.fn.to_qkv.weight"].shape) == (384, 1024, 1, 1)
    assert tuple(sd["ups.0.0.block1.proj.weight"].shape) == (1024, 1536, 3, 3)


@pytest.mark.parametrize("wrap", ["bare", "dataparallel"])
def test_irsde_checkpoint_saved_like_the_official_code_loads_strictly(tmp_path, wrap):
    source = _seeded(SMALL_UNET, 1)
    sd = source.state_dict()
    if wrap == "dataparallel":
        sd = {f"module.{k}": v for k, v in sd.items()}
    path = tmp_path / "ir-sde.pth"
    torch.save(sd, path)
    target = _seeded(SMALL_UNET, 2)
    load_checkpoint(target, path, "test")
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(target(x, x, 7), source(x, x, 7), atol=0, rtol=0)


def test_irsde_checkpoint_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(_seeded(partial(ConditionalUNet, nf=16, depth=2)).state_dict(), path)
    with pytest.raises(CheckpointFormatError, match="does not match"):
        load_checkpoint(_seeded(SMALL_UNET), path, "test")


# --- IR-SDE: the sampler --------------------------------------------------------------------


@pytest.mark.parametrize("steps,atol", [(1, 1e-5), (4, 1e-5), (100, 5e-3)])
def test_sde_sampler_with_an_oracle_noise_predictor_returns_the_clean_image(steps, atol):
    """x_t = mu + (x0 - mu) e^{-theta_bar_t dt} + sigma_bar_t * noise: given the true noise, the
    strided posterior sampler lands exactly on x0, the official 100-step Euler-Maruyama close to it."""
    sde = MeanRevertingSDE(max_sigma=10, T=100, schedule="cosine", eps=0.005)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 3, 16, 16, generator=gen)
    mu = x0 * 0.6 + 0.3

    def oracle(x, m, t):
        return (x - m - (x0 - m) * sde._decay(t)) / float(sde.sigma_bars[t])

    out = sde.sample(oracle, mu, steps, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=atol, rtol=0)


def test_sde_schedule_facts():
    sde = MeanRevertingSDE(max_sigma=10, T=100, schedule="cosine", eps=0.005)
    assert sde.max_sigma == pytest.approx(10 / 255)
    assert sde._decay(100) == pytest.approx(0.005)  # eps: what is left of x0 - mu at t = T
    assert float(sde.sigma_bars[100]) == pytest.approx(sde.max_sigma * (1 - 0.005**2) ** 0.5, rel=1e-5)
    assert sde.timesteps(4) == [100, 75, 50, 25]
    assert sde.timesteps(100) == list(range(100, 0, -1))
    with pytest.raises(ValueError):
        sde.timesteps(101)


# --- IR-SDE: the Dehazer on shared images -------------------------------------------------------


def _dehazer(steps: int = 3, seed: int = 0) -> SDEDehazer:
    net = _seeded(SMALL_UNET)
    return SDEDehazer(net, net, SamplerParams(steps=steps, seed=seed))


def test_irsde_dehazer_shape_finite_and_deterministic(hazy):
    dehazer = _dehazer(steps=3, seed=5)
    out = dehazer(hazy)
    assert out.shape == hazy.shape and out.dtype == np.uint8
    x = torch.from_numpy(hazy).permute(2, 0, 1)[None].float() / 255
    assert torch.isfinite(dehazer.restore(x)).all()
    assert np.array_equal(out, dehazer(hazy))
    assert np.array_equal(out, _dehazer(steps=3, seed=5)(hazy))
    assert not np.array_equal(out, _dehazer(steps=3, seed=6)(hazy))


@pytest.mark.parametrize("h,w", [(37, 53), (16, 16), (53, 37)])
def test_irsde_dehazer_odd_sizes(hazy, h, w):
    image = np.ascontiguousarray(hazy[:h, :w]) if h <= 48 else cv2.resize(hazy, (w, h))
    out = _dehazer(steps=2)(image)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_irsde_dehazer_tiles_large_images(hazy):
    from algorithms.common.runtime import RuntimeOptions

    net = _seeded(SMALL_UNET)
    tiled = SDEDehazer(net, net, SamplerParams(steps=2), RuntimeOptions(tile_size=32, tile_overlap=8))
    out = tiled(hazy)
    assert out.shape == hazy.shape and np.array_equal(out, tiled(hazy))


def test_irsde_through_the_registry(tmp_path, monkeypatch, hazy):
    """registry.create -> factory -> strict checkpoint load -> sampling with the registry's
    steps/seed. The network table is narrowed (constructor arguments only) to keep it fast."""
    monkeypatch.setitem(irsde.ARCHS, "irsde", SMALL_UNET)
    (tmp_path / "image-restoration-sde" / "deraining").mkdir(parents=True)
    torch.save(_seeded(SMALL_UNET).state_dict(), tmp_path / "image-restoration-sde/deraining/ir-sde-derainH100.pth")
    registry = parse_registry(
        """
- name: ImgRestorationSde
  type: diffusion
  importPath: algorithms.irsde
  params: {steps: 100, seed: 0}
  children:
    - {name: deraining-H100, type: deraining, path: image-restoration-sde/deraining/ir-sde-derainH100.pth,
       arch: irsde, params: {max_sigma: 10, steps: 3, seed: 7}}
"""
    )
    dehazer = create("ImgRestorationSde", weights_root=tmp_path, device="cpu", registry=registry)
    assert dehazer.sampler == SamplerParams(max_sigma=10, steps=3, seed=7)
    assert dehazer.describe()["steps"] == 3
    out = dehazer(hazy[:37, :53].copy())
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8


def test_irsde_through_the_cli_with_steps_and_seed_per_run(tmp_path, monkeypatch, hazy):
    """`dehaze run --param steps=N --param seed=S` (no Ray): the run uses exactly that sampler,
    the same seed gives the same image, another seed another one."""
    from serve_app.cli import main
    from serve_app.settings import get_settings

    monkeypatch.setitem(irsde.ARCHS, "irsde", SMALL_UNET)
    ckpt = tmp_path / "weights" / "image-restoration-sde" / "deraining" / "ir-sde-derainH100.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(_seeded(SMALL_UNET).state_dict(), ckpt)
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "- name: ImgRestorationSde\n  type: diffusion\n  importPath: algorithms.irsde\n"
        "  params: {steps: 100, seed: 0}\n  children:\n"
        "    - {name: deraining-H100, type: deraining, path: image-restoration-sde/deraining/ir-sde-derainH100.pth,"
        " arch: irsde, params: {max_sigma: 10}}\n"
    )
    monkeypatch.setenv("DEHAZE_WEIGHTS_ROOT", str(tmp_path / "weights"))
    get_settings.cache_clear()
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), cv2.cvtColor(hazy[:37, :53], cv2.COLOR_RGB2BGR))
    outs = {}
    try:
        for run, seed in (("a", 3), ("b", 3), ("c", 4)):
            args = ["run", str(image), "--model", "ImgRestorationSde", "--registry", str(registry), "--quiet",
                    "-o", str(tmp_path / run), "--param", "steps=2", "--param", f"seed={seed}"]
            assert main(args) == 0
            outs[run] = cv2.imread(str(tmp_path / run / "in.png"))
    finally:
        get_settings.cache_clear()
    assert outs["a"].shape == (37, 53, 3)
    assert np.array_equal(outs["a"], outs["b"]) and not np.array_equal(outs["a"], outs["c"])
    # the CLI ran the sampler it was asked for: the same Dehazer in-process gives the same image
    reg = parse_registry(registry.read_text())
    local = create("ImgRestorationSde", weights_root=tmp_path / "weights", device="cpu", registry=reg,
                   params={"steps": 2, "seed": 3})
    assert local.sampler.steps == 2 and local.sampler.seed == 3
    assert np.array_equal(cv2.cvtColor(local(hazy[:37, :53].copy()), cv2.COLOR_RGB2BGR), outs["a"])


# --- DA-CLIP ---------------------------------------------------------------------------------

SMALL_ENCODER = partial(DaCLIPImageEncoder, 64, 16, 64, 2, 2, 32)  # image, patch, width, layers, heads, dim
SMALL_DACLIP_UNET = partial(DaclipConditionalUNet, 3, 3, 8, (1, 2, 4, 8), 32, True, True)


def _open_clip_checkpoint(encoder: DaCLIPImageEncoder) -> dict:
    """A DA-CLIP file as open_clip's training saves it: the whole DaCLIP model (CLIP under
    ``clip.``, with its text tower; the ``visual.`` alias; the controller) under DDP's ``module.``,
    wrapped in {"epoch", "name", "state_dict", "optimizer"}."""
    sd = {}
    for key, value in encoder.state_dict().items():
        if key.startswith("visual."):
            sd[f"module.clip.{key}"] = value
        sd[f"module.{key}"] = value
    sd["module.clip.token_embedding.weight"] = torch.zeros(10, 8)
    sd["module.clip.transformer.resblocks.0.ln_1.weight"] = torch.ones(8)
    sd["module.clip.logit_scale"] = torch.tensor(4.6)
    sd["module.logit_scale"] = torch.tensor(4.6)
    return {"epoch": 30, "name": "daclip_ViT-B-32", "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}


def test_daclip_official_networks_layout():
    with torch.device("meta"):
        encoder, unet = daclip.build_encoder(), daclip.build_unet()
    enc_sd, unet_sd = encoder.state_dict(), unet.state_dict()
    assert Counter(k.split(".")[0] for k in enc_sd) == {"visual": 152, "visual_control": 176}
    assert sum(v.numel() for v in enc_sd.values()) == 182_785_536
    assert tuple(enc_sd["visual.positional_embedding"].shape) == (50, 768)
    assert tuple(enc_sd["visual_control.transformer.zero_modules.11.weight"].shape) == (768, 768)
    assert "visual_control.transformer.transformer.resblocks.11.attn.in_proj_weight" in enc_sd
    assert Counter(k.split(".")[0] for k in unet_sd) == {
        "prompt": 1, "init_conv": 1, "time_mlp": 4, "text_mlp": 4, "prompt_mlp": 2, "downs": 81, "ups": 89,
        "mid_block1": 4, "mid_attn": 27, "mid_block2": 4, "final_res_block": 5, "final_conv": 2,
    }
    assert sum(v.numel() for v in unet_sd.values()) == 48_975_747
    assert tuple(unet_sd["mid_attn.fn.fn.transformer_blocks.0.attn2.to_k.weight"].shape) == (512, 512)


def test_daclip_checkpoints_saved_like_the_official_code_load_strictly(tmp_path):
    encoder = _seeded(SMALL_ENCODER, 1)
    torch.save(_open_clip_checkpoint(encoder), tmp_path / "daclip.pt")
    sd = load_state_dict_file(tmp_path / "daclip.pt", daclip.ENCODER_CHECKPOINT)
    target = _seeded(SMALL_ENCODER, 2)
    load_into(target, sd)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(target(image), encoder(image)):
            torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_daclip_controller_steers_the_content_embedding():
    """Zero-initialised controller: the content embedding is plain CLIP's; trained (here random)
    zero modules change it."""
    encoder = _seeded(SMALL_ENCODER)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain = encoder.visual(image)
        torch.testing.assert_close(encoder(image)[0], plain)
        for layer in encoder.visual_control.transformer.zero_modules:
            torch.nn.init.normal_(layer.weight, std=0.05)
        assert not torch.allclose(encoder(image)[0], plain)


def test_clip_preprocess_shape():
    x = clip_preprocess(torch.rand(1, 3, 37, 53), 64)
    assert x.shape == (1, 3, 64, 64) and torch.isfinite(x).all()


def _daclip_dehazer(steps: int = 3, seed: int = 0) -> DaCLIPDehazer:
    return DaCLIPDehazer(_seeded(SMALL_ENCODER), _seeded(SMALL_DACLIP_UNET), SamplerParams(max_sigma=50, steps=steps, seed=seed))


@pytest.mark.parametrize("h,w", [(48, 64), (37, 53)])
def test_daclip_dehazer_shape_finite_deterministic(hazy, h, w):
    image = np.ascontiguousarray(hazy[:h, :w])
    dehazer = _daclip_dehazer(steps=3, seed=2)
    out = dehazer(image)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert np.array_equal(out, _daclip_dehazer(steps=3, seed=2)(image))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        assert torch.isfinite(dehazer.restore(x)).all()


def test_daclip_through_the_registry_with_two_weight_files(tmp_path, monkeypatch, hazy):
    monkeypatch.setattr(daclip, "build_encoder", SMALL_ENCODER)
    monkeypatch.setattr(daclip, "build_unet", SMALL_DACLIP_UNET)
    folder = tmp_path / "daclip-uir"
    folder.mkdir()
    torch.save(_open_clip_checkpoint(_seeded(SMALL_ENCODER)), folder / "daclip_ViT-B-32.pt")
    registry_text = """
- name: DaclipUir
  type: diffusion
  importPath: algorithms.daclip
  path: daclip-uir/daclip_ViT-B-32.pt
  params: {unet_path: daclip-uir/universal-ir.pth, steps: 2, seed: 3}
"""
    registry = parse_registry(registry_text)
    with pytest.raises(Exception, match="universal-ir.pth"):
        create("DaclipUir", weights_root=tmp_path, device="cpu", registry=registry)
    torch.save(_seeded(SMALL_DACLIP_UNET).state_dict(), folder / "universal-ir.pth")
    dehazer = create("DaclipUir", weights_root=tmp_path, device="cpu", registry=registry)
    assert dehazer.sampler == SamplerParams(max_sigma=50, steps=2, seed=3)
    out = dehazer(hazy[:37, :53].copy())
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
