"""MADN, the dehazing network vendored by the legacy system (no paper or upstream found).

Two networks with a conformance vector each: ``madn-meta`` = :class:`Meta` (8), the haze-feature
extractor (legacy ``dehaze_80_state_dict.pth``), and ``madn`` = :class:`TransformNet` (32), the
dehazer (legacy ``MADN/model.pth``, the registry path). The served Dehazer runs the legacy
pipeline: the 12-channel pre stack of the uint8 image (:func:`prestack.pre_stack`), Meta, then
TransformNet, output clamped to [0, 1] (common post-processing).

The Meta checkpoint is the variant's second weight file: the registry param ``meta_path``
(fetched and checked for availability like ``path``), or else -- as the legacy run.py did --
``dehaze_80_state_dict.pth`` in the directory of ``path``.
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from algorithms.base import BuildRequest
from algorithms.common.checkpoint import CheckpointFacts, load_into, load_state_dict_file
from algorithms.common.network import IOFacts, NetworkDehazer, NetworkVariant
from algorithms.common.runtime import RuntimeOptions
from algorithms.errors import UnknownVariantError, WeightsUnavailableError
from algorithms.madn.arch import MADN, Meta, TransformNet
from algorithms.madn.prestack import pre_stack

PAPER = "MADN (legacy Dehaze system; no publication identified)"

#: the Meta checkpoint's legacy file name, next to model.pth
META_FILE = "dehaze_80_state_dict.pth"
#: registry param naming the Meta checkpoint (relative to the weights root)
META_PARAM = "meta_path"

#: H, W >= 32: TransformNet's Dehaze head average-pools with a 32 x 32 kernel (the legacy code
#: fails on smaller images). Images of 16-31 pixels are reflect-padded to 32 on the
#: bottom/right and cropped back. Instance norms, the operation attention and the pre stack's
#: channel balance use whole-image statistics, so the image is never tiled.
_BARE_IO = IOFacts(min_size=32, pad_mode="reflect", tileable=False)

NETWORKS: dict[str, NetworkVariant] = {
    "madn": NetworkVariant(
        # forward(X, fea, pre): X = RGB in [0, 1], fea = Meta features, pre = the 12-channel stack
        build=partial(TransformNet, 32),
        io=_BARE_IO,
        # MADN/model.pth: a plain state dict
        checkpoint=CheckpointFacts(),
        paper=PAPER,
    ),
    "madn-meta": NetworkVariant(
        build=partial(Meta, 8),
        # input: the 12-channel enhanced stack of the legacy pre(0.5, 0); output: features
        io=IOFacts(tileable=False),
        # dehaze_80_state_dict.pth: a plain state dict
        checkpoint=CheckpointFacts(),
        paper=PAPER,
    ),
}


def pipeline_inputs(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IOFacts.prepare of the served pipeline: RGB in [0, 1] (N x 3 x H x W) -> (X, pre).

    The legacy code built the stack from ``ToPILImage(X)`` (``mul(255).byte()``, truncating);
    X is ``uint8 / 255`` here, for which that returns the uint8 image exactly.
    """
    images = x01.detach().mul(255).byte().permute(0, 2, 3, 1).cpu().numpy()
    stack = np.stack([pre_stack(np.ascontiguousarray(im)) for im in images])
    pre = torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous().to(x01.device)
    return x01, pre


#: the served pipeline (MADN module: Meta + TransformNet, forward(X, pre))
PIPELINE_IO = IOFacts(min_size=_BARE_IO.min_size, pad_mode=_BARE_IO.pad_mode, tileable=False,
                      prepare=pipeline_inputs)


def meta_checkpoint(req: BuildRequest) -> Path:
    """The Meta weights of a build request: the ``meta_path`` file, or the legacy sibling."""
    path = req.extra_weights.get(META_PARAM)
    if path is None:
        path = Path(req.weights_path).parent / META_FILE
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{req.algorithm}/{req.variant}: Meta checkpoint {path.name} not found ({path}); MADN needs "
            f"{META_FILE} next to {Path(req.weights_path).name} or the registry param {META_PARAM}"
        )
    return path


def factory(req: BuildRequest) -> NetworkDehazer:
    arch = req.arch or "madn"
    if arch != "madn":
        raise UnknownVariantError(
            f"{req.algorithm}/{req.variant}: arch {arch!r} is not a dehazer; MADN serves 'madn' "
            "(TransformNet with its Meta feature extractor)"
        )
    if req.weights_path is None:
        raise WeightsUnavailableError(f"{req.algorithm}/{req.variant}: no weights path in the registry")
    meta_file = meta_checkpoint(req)
    t0 = time.perf_counter()
    transform, meta = NETWORKS["madn"].build(), NETWORKS["madn-meta"].build()
    load_into(transform, load_state_dict_file(req.weights_path, NETWORKS["madn"].checkpoint),
              what=f"{req.algorithm}/{req.variant} TransformNet checkpoint {Path(req.weights_path).name}")
    load_into(meta, load_state_dict_file(meta_file, NETWORKS["madn-meta"].checkpoint),
              what=f"{req.algorithm}/{req.variant} Meta checkpoint {meta_file.name}")
    dehazer = NetworkDehazer(MADN(meta, transform), PIPELINE_IO, req.runtime or RuntimeOptions(),
                             req.algorithm, req.variant)
    dehazer.load_seconds = time.perf_counter() - t0
    return dehazer


factory.networks = NETWORKS  # type: ignore[attr-defined]
