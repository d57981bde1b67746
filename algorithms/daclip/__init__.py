"""DA-CLIP (Luo et al., ICLR 2024): universal image restoration by IR-SDE sampling, conditioned
on the degradation and content embeddings of a controlled CLIP ViT-B/32 image encoder.

Two weight files per variant: the registry ``path`` is the DA-CLIP model (``daclip_ViT-B-32.pt``)
and the ``unet_path`` param names the restoration U-Net (``universal-ir.pth``), relative to the
weights root; the registry fetches both (``*_path`` params are weight files). Sampling params as in IR-SDE
(``steps``, ``seed``, ``max_sigma``, ``T``, ``schedule``, ``eps``).
"""
from __future__ import annotations

import time
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from algorithms.base import BuildRequest
from algorithms.common.checkpoint import CheckpointFacts, StateDict, load_into, load_state_dict_file
from algorithms.common.runtime import RuntimeOptions
from algorithms.daclip.arch import DaCLIPImageEncoder, DaclipConditionalUNet
from algorithms.errors import WeightsUnavailableError
from algorithms.irsde import CHECKPOINT as UNET_CHECKPOINT
from algorithms.irsde import SamplerParams, SDEDehazer

PAPER = (
    "Luo, Gustafsson, Zhao, Sjolund, Schon. Controlling Vision-Language Models for Multi-Task "
    "Image Restoration. ICLR 2024, arXiv:2310.01018"
)

#: CLIP's input normalisation (OpenAI mean/std, as open_clip's preprocessing)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: official sizes: open_clip ViT-B-32 image tower; universal-ir U-Net (nf 64, ch_mult 1,2,4,8)
build_encoder: Callable[[], DaCLIPImageEncoder] = partial(DaCLIPImageEncoder, 224, 32, 768, 12, 12, 512)
build_unet: Callable[[], DaclipConditionalUNet] = partial(
    DaclipConditionalUNet, 3, 3, 64, (1, 2, 4, 8), 512, True, True
)

ENCODER_PREFIXES = ("clip.visual.", "visual_control.")


def keep_image_encoder(sd: StateDict) -> StateDict:
    """DA-CLIP checkpoint (a whole open_clip DaCLIP model) -> the image encoder's state dict.

    The file holds the CLIP model under ``clip.`` (image and text towers), the controller under
    ``visual_control.`` and possibly an alias ``visual.`` of ``clip.visual.``. Restoration only
    encodes images: ``clip.visual.*`` becomes ``visual.*``, ``visual_control.*`` is kept, the text
    tower and ``logit_scale`` are dropped; loading of what is kept is strict."""
    out: StateDict = {}
    for key, value in sd.items():
        if key.startswith("clip.visual."):
            out["visual." + key[len("clip.visual."):]] = value
        elif key.startswith("visual_control."):
            out[key] = value
    for key, value in sd.items():  # the alias, only where clip.visual.* was absent
        if key.startswith("visual.") and key not in out:
            out[key] = value
    return out


#: open_clip training checkpoints: {"epoch", "name", "state_dict" (DDP "module." keys), "optimizer"}
ENCODER_CHECKPOINT = CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",), remap=keep_image_encoder)


def clip_preprocess(x01: torch.Tensor, size: int) -> torch.Tensor:
    """[0,1] RGB -> CLIP input: bicubic resize of the short side to ``size`` (antialiased),
    centre crop, mean/std normalisation."""
    h, w = x01.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x01, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class DaCLIPDehazer(SDEDehazer):
    """IR-SDE sampling with the U-Net conditioned on DA-CLIP embeddings of the input (of each
    tile, for large images)."""

    def __init__(self, encoder: DaCLIPImageEncoder, unet: DaclipConditionalUNet, sampler: SamplerParams,
                 runtime: RuntimeOptions = RuntimeOptions()):
        super().__init__(unet, torch.nn.ModuleDict({"encoder": encoder, "unet": unet}), sampler, runtime)
        self.encoder = encoder
        self.unet = unet

    def restore(self, x01: torch.Tensor) -> torch.Tensor:
        content, degradation = self.encoder(clip_preprocess(x01, self.encoder.visual.image_size))

        def model(x: torch.Tensor, mu: torch.Tensor, t: int) -> torch.Tensor:
            return self.unet(x, mu, t, text_context=degradation, image_context=content)

        generator = torch.Generator(device=x01.device).manual_seed(self.sampler.seed)
        return self.sde.sample(model, x01, self.sampler.steps, generator)


def factory(req: BuildRequest) -> DaCLIPDehazer:
    if req.weights_path is None:
        raise WeightsUnavailableError(f"{req.algorithm}/{req.variant}: no weights path in the registry")
    unet_file = req.extra_weights.get("unet_path")
    if unet_file is None:
        raise WeightsUnavailableError(f"{req.algorithm}/{req.variant}: the params need unet_path (universal-ir.pth)")
    t0 = time.perf_counter()
    encoder, unet = build_encoder(), build_unet()
    load_into(encoder, load_state_dict_file(req.weights_path, ENCODER_CHECKPOINT), f"{req.algorithm}/{req.variant} DA-CLIP")
    load_into(unet, load_state_dict_file(unet_file, UNET_CHECKPOINT),
              f"{req.algorithm}/{req.variant} U-Net")
    sampler = SamplerParams.from_params({"max_sigma": 50, **req.params})
    dehazer = DaCLIPDehazer(encoder, unet, sampler, req.runtime or RuntimeOptions())
    dehazer.load_seconds = time.perf_counter() - t0
    return dehazer
