"""MSFNet (Shi et al.): multi-stream fusion network; [-1,1] input, the full-resolution head is the image."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.msfnet.arch import MSFNet

PAPER = "Shi et al., MSFNet: Multi-stream Fusion Network with Generalized Smooth L1 Loss for Single Image Dehazing"

NETWORKS: dict[str, NetworkVariant] = {
    "msfnet": NetworkVariant(
        build=MSFNet,
        # official test.py: ToTensor() + Normalize(0.5, 0.5), any size, no padding; the official
        # forward returns (1/4, 1/2, full) images and the full one (index 2) is the result,
        # clamped to [0, 1]. Our forward returns that index-2 image itself (forward_scales has
        # the tuple). Only convolutions and nearest resizes to the skip's size: tiles and batch
        # samples are independent.
        io=IOFacts(input_range=(-1.0, 1.0), tileable=True, batchable=True, channels_last=True),
        # indoor.pth / outdoor.pth: {"epoch", "state_dict"}, keys without prefix
        checkpoint=CheckpointFacts(unwrap=("state_dict",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
