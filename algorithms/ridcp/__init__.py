"""RIDCP (Wu et al., CVPR 2023): codebook-prior dehazing for real hazy images, [0,1] RGB in/out.

The network mirror-pads itself to a multiple of 32 (official ``test()``), so no padding is
declared here. Its normalised feature alignment rescales features by whole-image means, a global
operation: the image is never tiled.
"""
from __future__ import annotations

from functools import partial

import torch

from algorithms.common.checkpoint import CheckpointFacts, StateDict
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.ridcp.arch import VQWeightDehazeNet

PAPER = (
    "Wu, Duan, Guo, Chai, Li. RIDCP: Revitalizing Real Image Dehazing via High-Quality "
    "Codebook Priors. CVPR 2023, arXiv:2304.03994"
)

CHM_WEIGHT_KEY = "quantize_group.0.weight"


def add_neutral_chm_weight(sd: StateDict) -> StateDict:
    """The released ``pretrained_RIDCP.pth`` lacks the CHM matching weight, which the official
    code reads from a second file (``weight_for_matching_dehazing_Flickr.pth``). A checkpoint
    without it gets zeros: ``exp(alpha * 0) = 1``, i.e. plain nearest-codeword matching. Bake the
    second file into the checkpoint under this key to get the official CHM (see README.md)."""
    if CHM_WEIGHT_KEY not in sd:
        codebook = sd["quantize_group.0.embedding.weight"]
        sd = {**sd, CHM_WEIGHT_KEY: torch.zeros(codebook.shape[0], dtype=codebook.dtype)}
    return sd


NETWORKS: dict[str, NetworkVariant] = {
    # inference_ridcp.py with the README demo flags --use_weight --alpha -21.25
    "ridcp": NetworkVariant(
        build=partial(VQWeightDehazeNet, codebook_params=((64, 1024, 512),), use_weight=True, weight_alpha=-21.25),
        io=IOFacts(tileable=False),
        # basicsr layout: {"params": state_dict}
        checkpoint=CheckpointFacts(unwrap=("params",), remap=add_neutral_chm_weight),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
