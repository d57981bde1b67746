"""FogRemoval / SRDefog (Jin et al., ACCV 2022): U-GAT-IT style generator, NH-HAZE weights."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.fogremoval.arch import ResnetGenerator

PAPER = ("Jin, Yan, Yang, Tan: Structure Representation Network and Uncertainty Feedback "
         "Learning for Dense Non-Uniform Fog Removal, ACCV 2022")

NETWORKS: dict[str, NetworkVariant] = {
    "fogremoval": NetworkVariant(
        build=partial(ResnetGenerator, input_nc=3, output_nc=3, ngf=64, n_blocks=4, img_size=512, light=True),
        # Normalize(0.5, 0.5) in, denorm out; two stride-2 stages -> multiples of 4. Instance/layer
        # norms and the CAM pooling use whole-image statistics, so tiles would not match.
        io=IOFacts(input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), pad_multiple=4, min_size=16,
                   output_index=0, tileable=False),
        # the released file holds all U-GAT-IT nets; the dehazer is the A->B generator
        checkpoint=CheckpointFacts(unwrap=("genA2B",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
