"""WPXNet: codebook-prior + neighborhood-attention + channel-attention dehazing network (the
legacy system author's own model, earthy-zinc/dehaze-system ``FusionRefine``)."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts, StateDict
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.wpxnet.arch import CodebookPrior, FusionRefine

PAPER = (
    "WPXNet, thesis work of the earthy-zinc/dehaze-system author (no public paper); builds on "
    "RIDCP (Wu et al., CVPR 2023, arXiv:2304.03994), DiNAT (Hassani & Shi, arXiv:2209.15001) "
    "and RCAN (Zhang et al., ECCV 2018, arXiv:1807.02758)"
)


def drop_relative_position_bias(sd: StateDict) -> StateDict:
    """Checkpoints trained under natten 0.15 carry ``...attn.rpb`` tensors; the legacy service
    (natten 0.17.3, ``strict=False``) silently dropped them and ran without positional bias.
    We do the same, explicitly."""
    return {k: v for k, v in sd.items() if not k.endswith(".attn.rpb")}


NETWORKS: dict[str, NetworkVariant] = {
    "wpxnet": NetworkVariant(
        build=FusionRefine,
        # ToTensor only; the Tanh output is read directly as the [0,1] image (clamped).
        # The 16-dilated attention of level 0 needs >= 7*16 tokens at 1/4 resolution, i.e. a
        # padded input >= 448: smaller images are mirror-tiled up to 416 (the network's own
        # test() then pads past the next multiple of 32, to 448) and cropped back. Mirror
        # tiling keeps the image statistics that the decoder's global-mean normalisation and
        # the channel attentions see. Images over the tile size (1024) run in overlapping
        # tiles: those global operations then see one tile each, the price of bounded memory.
        io=IOFacts(min_size=416, pad_mode="reflect", output_index=0),
        # basicsr save_network: {"params": state_dict}
        checkpoint=CheckpointFacts(unwrap=("params", "state_dict"), remap=drop_relative_position_bias),
        paper=PAPER,
    ),
    # stage 1: the codebook prior alone, a VQ autoencoder of clear images
    # (dehaze train --arch wpxnet-hqp --reconstruct); its weights are a subset of wpxnet's
    "wpxnet-hqp": NetworkVariant(build=CodebookPrior, io=IOFacts(pad_multiple=4, pad_mode="reflect"), paper=PAPER),
}

factory = network_factory(NETWORKS)
