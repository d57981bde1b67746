"""CMFNet (Fan et al., 2022): one architecture, released for dehazing, deblurring and raindrop removal."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.cmfnet.arch import CMFNet

PAPER = ("Fan, Liu, Liu: Compound Multi-branch Feature Fusion for Real Image Restoration, "
         "arXiv:2206.02748, 2022")

NETWORKS: dict[str, NetworkVariant] = {
    "cmfnet": NetworkVariant(
        build=CMFNet,
        # demo.py: RGB [0, 1], reflect-pad bottom/right to a multiple of 8, clamp the output.
        # Channel attention pools over the whole image, so tiles would not match.
        io=IOFacts(pad_multiple=8, min_size=16, output_index=0, tileable=False, channels_last=True),
        # {'state_dict': ..., 'epoch', 'optimizer'}; some files were saved from DataParallel
        checkpoint=CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
