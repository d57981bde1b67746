"""GCANet (Chen et al., WACV 2019): gated context aggregation network."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.gcanet.arch import GCANet
from algorithms.gcanet.preprocess import network_input_and_image

#: RGB in pixel units minus 128, plus the edge channel; output in pixel units. The official
#: test resizes sides to multiples of 4; here they are padded instead (and cropped back).
GCANET_IO = IOFacts(
    input_range=(-128.0, 127.0),
    prepare=network_input_and_image,
    output_range=(0.0, 255.0),
    pad_multiple=4,
    # instance normalisation uses whole-image statistics (per sample: batches are fine)
    tileable=False,
    batchable=True,
    # channels_last stays off. PyTorch's channels-last CPU GroupNorm moved the released
    # checkpoint's output by up to 0.023 (SOTS-indoor 31.08 -> 30.67 dB). With
    # algorithms.common.layers.GroupNorm the outputs agree (max 1 grey level, same PSNR on 12
    # images), but its layout conversions make the whole network 1.17x slower (24.4 vs 20.8 s, 2026-12-06)
)

NETWORKS: dict[str, NetworkVariant] = {
    "gcanet": NetworkVariant(
        build=partial(GCANet, in_c=4, out_c=3, only_residual=True),
        io=GCANET_IO,
        # a bare state dict, legacy (non-zip) torch format
        checkpoint=CheckpointFacts(),
        paper="Chen et al., Gated Context Aggregation Network for Image Dehazing and Deraining, WACV 2019",
    ),
}

factory = network_factory(NETWORKS)
