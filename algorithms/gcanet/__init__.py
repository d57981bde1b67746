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
    # channels_last stays off: 1.3x faster on CPU, but its CPU kernels moved the released
    # checkpoint's output by up to 0.023 and SOTS-indoor from 31.08 to 30.67 dB (tests/test_gcanet_psd.py)
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
