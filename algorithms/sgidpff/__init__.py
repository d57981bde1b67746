"""SGID-PFF (Bai et al., IEEE TIP 2022): [0,1] RGB in/out, H and W padded to a multiple of 4.

The official ``inference.py`` crops the image to a multiple of 4 instead (top-left, the legacy
service centre-cropped); padding and cropping the result back keeps every pixel.
"""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.sgidpff.arch import SGIDPFF

NETWORKS: dict[str, NetworkVariant] = {
    "sgid-pff": NetworkVariant(
        build=SGIDPFF,
        io=IOFacts(pad_multiple=4, pad_mode="reflect", channels_last=True),
        # SOTS_indoor.pt / SOTS_outdoor.pt: bare state dicts (keys pre_dehaze.*, dehaze.*)
        checkpoint=CheckpointFacts(),
        paper="Bai, Pan, Xiang, Tang. Self-Guided Image Dehazing Using Progressive Feature Fusion. IEEE TIP 2022",
    ),
}

factory = network_factory(NETWORKS)
