"""DCPDN (Zhang & Patel, CVPR 2018): densely connected pyramid dehazing network."""
from __future__ import annotations

import re

import torch

from algorithms.common.checkpoint import CheckpointFacts, StateDict
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.dcpdn.arch import DCPDN

PAPER = "Zhang, Patel: Densely Connected Pyramid Dehazing Network, CVPR 2018"

#: torchvision <= 0.2 named dense-layer modules 'norm.1', 'conv.2', ...; now 'norm1', 'conv2'
_OLD_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def remap_released_checkpoint(state_dict: StateDict) -> StateDict:
    """netG_epoch_8.pth (PyTorch 0.3.1) -> current names: rename the old torchvision dense-layer
    keys and add the ``num_batches_tracked`` counters (introduced in PyTorch 0.4.1, unused at
    inference) to every BatchNorm."""
    remapped = {_OLD_DENSE_LAYER_KEY.sub(r"\1\2", key): value for key, value in state_dict.items()}
    for key in list(remapped):
        if key.endswith(".running_var"):
            remapped.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0))
    return remapped


NETWORKS: dict[str, NetworkVariant] = {
    "dcpdn": NetworkVariant(
        build=DCPDN,
        # demo.py: RGB [0, 1] unnormalised, H and W multiples of 256 (8 stride-2 levels), output
        # saved with save_image(normalize=True) = min-max of the whole image. The atmospheric
        # light is pooled over HxH blocks, so tiles would not match.
        io=IOFacts(pad_multiple=256, min_size=256, output_range="minmax", output_index=0, tileable=False),
        checkpoint=CheckpointFacts(remap=remap_released_checkpoint),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
