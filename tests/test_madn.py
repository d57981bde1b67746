"""MADN beyond the generic conformance test: Meta -> TransformNet chained as the legacy run.py
did, the 12-channel pre stack from the uint8 image, the served Dehazer built from both
checkpoints (odd and small sizes), and the errors for a missing Meta checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import algorithms
from algorithms.base import BuildRequest
from algorithms.common.network import to_tensor01, to_uint8
from algorithms.common.runtime import RuntimeOptions
from algorithms.errors import UnknownVariantError, WeightsUnavailableError
from algorithms.madn import META_FILE, factory, pipeline_inputs
from algorithms.madn.arch import MADN
from algorithms.madn.prestack import pre_stack
from algorithms.registry import create, parse_registry

CPU = RuntimeOptions(device="cpu", tile_size=0)

#: the registry entry proposed for configs/models.yaml (legacy modelId 75)
REGISTRY_ENTRY = """
- name: MADN
  type: cnn
  description: Legacy MADN, haze features of an enhanced 12-channel stack weighting 34 mixed operations
  paper: "MADN (legacy Dehaze system; no publication identified)"
  importPath: algorithms.madn
  children:
    - {name: default, type: general, description: "TransformNet(32) with its Meta(8) haze-feature extractor (legacy model.pth + dehaze_80_state_dict.pth; training data unknown)", path: MADN/model.pth, arch: madn, id: 75, params: {meta_path: MADN/dehaze_80_state_dict.pth}}
"""


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vectors(conformance):
    spec, io = conformance.load_variant("madn")
    meta_spec, meta_io = conformance.load_variant("madn-meta")
    return spec, io, meta_spec, meta_io


@pytest.fixture(scope="module")
def state_dicts(conformance, vectors):
    spec, _, meta_spec, _ = vectors
    return conformance.conformance_state_dict(spec), conformance.conformance_state_dict(meta_spec)


@pytest.fixture(scope="module")
def pipeline(state_dicts):
    transform_sd, meta_sd = state_dicts
    meta, transform = algorithms.build_network("madn-meta"), algorithms.build_network("madn")
    meta.load_state_dict(meta_sd, strict=True)
    transform.load_state_dict(transform_sd, strict=True)
    return MADN(meta, transform).eval()


def test_meta_on_the_stack_gives_the_vector_features(pipeline, vectors):
    """Our Meta (madn-meta rule weights) on the vector's pre stack = the features the official
    Meta gave TransformNet in the madn vector."""
    _, io, meta_spec, _ = vectors
    with torch.no_grad():
        fea, _ = pipeline.meta(io["input_pre"])
    torch.testing.assert_close(fea, io["input_fea"], atol=meta_spec["atol"], rtol=1e-4)


def test_chained_pipeline_reproduces_the_output(pipeline, vectors):
    spec, io, _, _ = vectors
    with torch.no_grad():
        out = pipeline(io["input"], io["input_pre"])
    torch.testing.assert_close(out, io["output"], atol=spec["atol"], rtol=spec["rtol"])


def test_uint8_round_trip_is_exact():
    """ToTensor (k / 255) then ToPILImage (mul(255).byte(), truncating) returns every level k:
    the pipeline may rebuild the uint8 image from the [0, 1] tensor it is given."""
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(levels.float().div(255.0).mul(255).byte(), levels)


def test_pre_stack_reproduces_the_vector_stack(vectors):
    """The vector's X is torch.rand (X * 255 is not integral), and the legacy code built the
    stack from ToPILImage(X) = X.mul(255).byte(): rebuild that image and its stack."""
    _, io, _, meta_io = vectors
    x = io["input"]
    assert float((x * 255 - (x * 255).round()).abs().max()) > 0.25  # not an image / 255
    image = x[0].mul(255).byte().permute(1, 2, 0).numpy()  # RGB uint8
    stack = torch.from_numpy(pre_stack(image)).permute(2, 0, 1)[None]
    assert torch.equal(stack, io["input_pre"])
    # the pipeline's prepare hook does the same from the tensor
    x_out, pre = pipeline_inputs(x)
    assert x_out is x and torch.equal(pre, io["input_pre"])
    # madn-meta's input is such a stack too: its channels 0-2 are the image, BGR
    bgr = meta_io["input"][0, :3].mul(255).round().byte().permute(1, 2, 0).numpy()
    meta_stack = torch.from_numpy(pre_stack(np.ascontiguousarray(bgr[:, :, ::-1]))).permute(2, 0, 1)[None]
    assert torch.equal(meta_stack, meta_io["input"])


def test_pre_stack_channel_order():
    """image, bright and gamma are BGR, the balanced image RGB (the legacy quirk)."""
    values = np.arange(20, 220, 10, dtype=np.uint8).reshape(4, 5)
    image = np.stack([values, values[::-1], values.T.reshape(4, 5)], axis=2)  # R, G, B: equal means
    s = np.round(pre_stack(image) * 255).astype(np.int64)
    bgr = image[:, :, ::-1].astype(np.int64)
    np.testing.assert_array_equal(s[..., 0:3], bgr)
    np.testing.assert_array_equal(s[..., 3:6], image)  # gain 1 everywhere: balance = the image, RGB
    np.testing.assert_array_equal(s[..., 6:9], np.round(0.5 * bgr))  # half to even: 25 -> 12, 35 -> 18
    np.testing.assert_array_equal(s[..., 9:12], np.trunc((bgr / 255.0) ** 2.5 * 255.0))
    veiled = image.copy()
    veiled[..., 0] = veiled[..., 0] // 2  # darker R: the grey-world gain brightens R only
    b = np.round(pre_stack(veiled) * 255)
    assert b[..., 3].mean() > veiled[..., 0].mean() + 10 and b[..., 5].mean() < image[..., 2].mean()


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory, state_dicts):
    """Both checkpoints as plain state dicts, laid out like the legacy weights directory."""
    root = tmp_path_factory.mktemp("weights")
    (root / "MADN").mkdir()
    transform_sd, meta_sd = state_dicts
    torch.save(transform_sd, root / "MADN" / "model.pth")
    torch.save(meta_sd, root / "MADN" / META_FILE)
    return root


@pytest.fixture(scope="module")
def dehazer(weights_root):
    """Through the registry, with the proposed entry (meta_path param)."""
    return create("MADN", weights_root=weights_root, runtime=CPU, registry=parse_registry(REGISTRY_ENTRY))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 230, (h, w, 3)).astype(np.float64)
    haze = 0.6 * base + 0.4 * 235.0  # a hazy-looking veil
    return np.clip(haze, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(33, 47), (70, 101), (16, 16)])
def test_dehazer_sizes(dehazer, size):
    """Odd sizes; 16 x 16 is reflect-padded to the 32 x 32 minimum (avg_pool2d kernel 32)."""
    image = _image(*size)
    out = dehazer(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    with torch.inference_mode():
        raw = dehazer.forward_raw(to_tensor01(image, torch.device("cpu")))
    assert raw.shape == (1, 3, *size) and bool(torch.isfinite(raw).all())
    assert np.array_equal(to_uint8(raw), out)  # a second run gives the same image: deterministic
    assert np.abs(out.astype(int) - image).mean() > 0.5  # and it did change the image


def test_dehazer_runs_the_chained_pipeline(dehazer, vectors):
    """forward_raw on the vector's X (pre stack built by the prepare hook) = the vector."""
    spec, io, _, _ = vectors
    with torch.inference_mode():
        out = dehazer.forward_raw(io["input"])
    torch.testing.assert_close(out, io["output"], atol=spec["atol"], rtol=spec["rtol"])
    assert dehazer.describe()["params"] == spec["num_params"] + 48691  # TransformNet + Meta


def test_meta_beside_model_without_param(weights_root):
    """No meta_path param: the legacy run.py rule, dehaze_80_state_dict.pth next to model.pth."""
    req = BuildRequest(algorithm="MADN", variant="default", arch="madn",
                       weights_path=weights_root / "MADN" / "model.pth", runtime=CPU)
    dehazer = factory(req)
    assert dehazer(_image(32, 40)).shape == (32, 40, 3)


def test_missing_meta_checkpoint(tmp_path, state_dicts):
    (tmp_path / "MADN").mkdir()
    torch.save(state_dicts[0], tmp_path / "MADN" / "model.pth")
    req = BuildRequest(algorithm="MADN", variant="default", arch="madn",
                       weights_path=tmp_path / "MADN" / "model.pth", runtime=CPU)
    with pytest.raises(WeightsUnavailableError, match=META_FILE):
        factory(req)
    with pytest.raises(WeightsUnavailableError, match=META_FILE):
        create("MADN", weights_root=tmp_path, runtime=CPU, registry=parse_registry(REGISTRY_ENTRY))


def test_meta_alone_is_not_a_dehazer(weights_root):
    req = BuildRequest(algorithm="MADN", variant="meta", arch="madn-meta",
                       weights_path=weights_root / "MADN" / META_FILE, runtime=CPU)
    with pytest.raises(UnknownVariantError):
        factory(req)
