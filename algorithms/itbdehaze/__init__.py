"""ITBdehaze (Liu et al., CVPRW 2023): NTIRE 2023 HR non-homogeneous dehazing winner."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.itbdehaze.arch import fusion_refine

PAPER = (
    "Liu, Liu, Li, Wu, Chen. A Data-Centric Solution to NonHomogeneous Dehazing via Vision Transformer. "
    "CVPR Workshops (NTIRE) 2023"
)

NETWORKS: dict[str, NetworkVariant] = {
    "itbdehaze": NetworkVariant(
        build=fusion_refine,
        # official: ToTensor ([0, 1]), no normalisation; the tanh output is used as the [0, 1]
        # image (clamped). H, W must be multiples of 256 (reflect-padded here; the official
        # test reflect-pads or crops the 4000x6000 NTIRE images into overlapping squares).
        io=IOFacts(input_range=(0.0, 1.0), output_range=(0.0, 1.0), pad_multiple=256, pad_mode="reflect"),
        # best.pkl: a bare state dict, "module." when saved from the DataParallel test wrapper
        checkpoint=CheckpointFacts(strip_prefixes=("module.",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
