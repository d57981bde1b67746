"""AECR-Net (Wu et al., CVPR 2021): compact autoencoder-like dehazing network."""
from __future__ import annotations

from algorithms.aecrnet.arch import Dehaze
from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory

PAPER = (
    "Wu, Qu, Lin, Zhou, Zhang, Xie, Ma. Contrastive Learning for Compact Single Image Dehazing. "
    "CVPR 2021, arXiv:2104.09367"
)

NETWORKS: dict[str, NetworkVariant] = {
    "aecr-net": NetworkVariant(
        build=lambda: Dehaze(3, 3),
        # ToTensor only; the tanh output is read directly as a [0,1] image (clamped).
        # Stride-2 convs vs transposed convs need H, W multiples of 4; channel attention
        # pools globally, so tiles are not independent.
        io=IOFacts(pad_multiple=4, pad_mode="reflect", tileable=False),
        # train_aecrnet.py saves {"model": DataParallel(net).state_dict(), "optimizer": ..., ...}
        checkpoint=CheckpointFacts(unwrap=("model", "state_dict"), strip_prefixes=("module.",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
