"""Network variants as data, and the one Dehazer that runs any of them.

An algorithm folder declares its networks like timm declares model configs::

    NETWORKS = {
        "dehazeformer-t": NetworkVariant(
            build=partial(DehazeFormer, embed_dims=[24, 48, 96, 48, 24], ...),
            io=IOFacts(input_range=(-1, 1), output_range=(-1, 1)),
            checkpoint=CheckpointFacts(unwrap=("state_dict",)),
        ),
    }
    factory = network_factory(NETWORKS)

The key is the conformance variant id (the folder name in shared/conformance); registry
children name it in their ``arch`` field. Value range, normalisation, padding, extra inputs,
output selection and clamping are applied here, once, for every network.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from algorithms.base import BuildRequest, Dehazer
from algorithms.common.checkpoint import CheckpointFacts, StateDict, load_into, load_state_dict_file
from algorithms.common.padding import pad_to_multiple, tiled_apply
from algorithms.common.runtime import RuntimeOptions, resolve_device
from algorithms.errors import RegistryError, UnknownVariantError, WeightsUnavailableError


@dataclass(frozen=True)
class IOFacts:
    """Test-time pre/post-processing of one network, as its official code does it."""

    #: the network sees ``x01 * (hi - lo) + lo``
    input_range: tuple[float, float] = (0.0, 1.0)
    #: per-channel normalisation applied after the range mapping (None = none)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    #: pad H and W (bottom/right) to a multiple of this, and to at least ``min_size``
    pad_multiple: int = 1
    min_size: int = 0
    pad_mode: str = "reflect"
    #: output value range mapped back to [0, 1]; "minmax" = normalise the whole image
    output_range: tuple[float, float] | str = (0.0, 1.0)
    #: when forward returns a tuple/list, the element that is the restored image
    output_index: int = 0
    #: builds the network's positional inputs from the normalised RGB tensor (e.g. GCANet's
    #: edge channel, MADN's extra inputs); None = the tensor itself
    prepare: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]] | None = None
    #: whether tiles may be processed independently (False for global operations)
    tileable: bool = True
    #: fp16 autocast on CUDA verified against fp32 (PSNR >= 40 dB apart)
    autocast_ok: bool = False
    #: same-size images may share one forward (no operation mixes the samples of a batch,
    #: e.g. a mean over the whole tensor); verified per network by tests/test_batching.py
    batchable: bool = False
    #: channels-last memory format is faster on CPU for this network, same outputs within float
    #: rounding (benchmarks/fastpaths.py); used unless RuntimeOptions.channels_last overrides it
    channels_last: bool = False


@dataclass(frozen=True)
class NetworkVariant:
    """One network variant: official constructor + pre/post-processing + checkpoint layout."""

    build: Callable[[], torch.nn.Module]
    io: IOFacts = field(default_factory=IOFacts)
    checkpoint: CheckpointFacts = field(default_factory=CheckpointFacts)
    #: paper reference (shown by GET /v1/models and in docs)
    paper: str = ""


def to_tensor01(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 1 x 3 x H x W in [0, 1]."""
    with warnings.catch_warnings():  # read-only arrays (e.g. from PIL) are only read here
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(image).to(device).permute(2, 0, 1).unsqueeze(0)
    return t.float().div_(255.0)


def to_uint8(x01: torch.Tensor) -> np.ndarray:
    """float 1 x 3 x H x W in ~[0, 1] -> uint8 H x W x 3 (clamped, rounded)."""
    return x01[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()


class NetworkDehazer(Dehazer):
    """Runs a loaded network under its IOFacts, with padding and tiled inference."""

    def __init__(
        self,
        network: torch.nn.Module,
        io: IOFacts,
        runtime: RuntimeOptions = RuntimeOptions(),
        algorithm: str = "",
        variant: str | None = None,
    ):
        self.device = resolve_device(runtime.device)
        self.runtime = runtime
        self.io = io
        self.network = network.eval().to(self.device)
        for p in self.network.parameters():
            p.requires_grad_(False)
        # IOFacts.channels_last was measured on CPU; on other devices only an explicit option applies it
        default_layout = io.channels_last and self.device.type == "cpu"
        self.channels_last = default_layout if runtime.channels_last is None else runtime.channels_last
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        #: what forward_raw calls: the module, or its torch.compile'd wrapper
        self._forward = torch.compile(self.network, dynamic=True) if runtime.compile else self.network
        self.algorithm = algorithm
        self.variant = variant
        if runtime.threads:
            torch.set_num_threads(runtime.threads)

    # -- the pipeline -----------------------------------------------------------------------
    def _normalise(self, x01: torch.Tensor) -> torch.Tensor:
        lo, hi = self.io.input_range
        x = x01 * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else x01
        if self.io.mean is not None:
            mean = torch.tensor(self.io.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.io.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def forward_raw(self, x01: torch.Tensor) -> torch.Tensor:
        """[0,1] tensor (any size) -> network output in its own range, same size."""
        padded, (h, w) = pad_to_multiple(x01, self.io.pad_multiple, self.io.min_size, self.io.pad_mode)
        x = self._normalise(padded)
        inputs = self.io.prepare(x) if self.io.prepare else x
        if not isinstance(inputs, (tuple, list)):
            inputs = (inputs,)
        if self.channels_last:
            inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
        use_amp = self.device.type == "cuda" and self.runtime.autocast and self.io.autocast_ok
        with torch.autocast(self.device.type, enabled=use_amp):
            out = self._forward(*inputs)
        if isinstance(out, (tuple, list)):
            out = out[self.io.output_index]
        return out[:, :, :h, :w].float()

    def _to01(self, y: torch.Tensor) -> torch.Tensor:
        rng = self.io.output_range
        if rng == "minmax":
            lo, hi = y.min(), y.max()
            return (y - lo) / (hi - lo).clamp_min(1e-12)
        lo, hi = rng
        return (y - lo) / (hi - lo) if (lo, hi) != (0.0, 1.0) else y

    def _tiled(self, h: int, w: int) -> bool:
        tile = self.runtime.tile_size
        return bool(self.io.tileable and tile and (h > tile or w > tile))

    @torch.inference_mode()
    def dehaze(self, image: np.ndarray) -> np.ndarray:
        x01 = to_tensor01(image, self.device)
        if self._tiled(*x01.shape[-2:]):
            y = tiled_apply(self.forward_raw, x01, self.runtime.tile_size, self.runtime.tile_overlap,
                            self.io.pad_multiple)
        else:
            y = self.forward_raw(x01)
        return to_uint8(self._to01(y))

    def batch_key(self, image: np.ndarray):
        """The exact input shape: a batch must not change what any single image would see
        (reflect padding, global statistics of min-max outputs), so only equal shapes share a
        forward. Tiled (large) images and networks not marked ``batchable`` run alone."""
        h, w = image.shape[:2]
        if not self.io.batchable or self.io.output_range == "minmax" or self._tiled(h, w):
            return None
        return (h, w)

    @torch.inference_mode()
    def dehaze_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        keys = {self.batch_key(im) for im in images}
        if len(images) == 1 or None in keys or len(keys) != 1:
            return [self(im) for im in images]
        x01 = torch.cat([to_tensor01(im, self.device) for im in images])
        y = self._to01(self.forward_raw(x01))
        return [to_uint8(y[i:i + 1]) for i in range(len(images))]

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "params": sum(p.numel() for p in self.network.parameters()),
        }


def network_factory(networks: dict[str, NetworkVariant], default_arch: str | None = None):
    """A registry factory for an algorithm whose variants are entries of ``networks``."""

    def factory(req: BuildRequest) -> NetworkDehazer:
        arch = req.arch or default_arch or (next(iter(networks)) if len(networks) == 1 else None)
        if arch not in networks:
            raise UnknownVariantError(
                f"{req.algorithm}/{req.variant}: arch {arch!r} is not one of {sorted(networks)}"
            )
        unused = sorted(k for k in req.params if not k.endswith("_path"))  # *_path: extra weight files
        if unused:
            raise RegistryError(f"{req.algorithm}/{req.variant}: this network takes no parameters, got {unused}")
        spec = networks[arch]
        net = spec.build()
        if req.weights_path is None:
            raise WeightsUnavailableError(f"{req.algorithm}/{req.variant}: no weights path in the registry")
        t0 = time.perf_counter()
        sd = load_state_dict_file(req.weights_path, spec.checkpoint)
        load_into(net, sd, what=f"{req.algorithm}/{req.variant} checkpoint")
        dehazer = NetworkDehazer(net, spec.io, req.runtime, req.algorithm, req.variant)
        dehazer.load_seconds = time.perf_counter() - t0
        return dehazer

    factory.networks = networks  # type: ignore[attr-defined]
    return factory


def load_network(spec: NetworkVariant, state_dict: StateDict) -> torch.nn.Module:
    net = spec.build()
    load_into(net, state_dict)
    return net.eval()


def algorithm_packages() -> list[str]:
    """Names of the algorithm packages (every package of ``algorithms`` but the shared ones)."""
    import pkgutil

    import algorithms

    return [m.name for m in pkgutil.iter_modules(algorithms.__path__) if m.ispkg and m.name not in ("common", "training")]


def declared_networks() -> dict[str, NetworkVariant]:
    """Every algorithm's NETWORKS table merged: {conformance variant id: NetworkVariant}."""
    import importlib

    found: dict[str, NetworkVariant] = {}
    for name in algorithm_packages():
        found.update(getattr(importlib.import_module(f"algorithms.{name}"), "NETWORKS", None) or {})
    return found


def find_network(variant_id: str) -> NetworkVariant:
    """The NetworkVariant with this conformance id, from whichever algorithm declares it."""
    nets = declared_networks()
    if variant_id not in nets:
        raise UnknownVariantError(f"no algorithm declares network {variant_id!r}")
    return nets[variant_id]
