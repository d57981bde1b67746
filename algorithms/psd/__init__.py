"""PSD (Chen et al., CVPR 2021): synthetic-to-real dehazing fine-tuned with physical priors."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.gcanet import GCANET_IO
from algorithms.gcanet.preprocess import network_input
from algorithms.psd.arch import PSDFFANet, PSDGCANet

PAPER = "Chen et al., PSD: Principled Synthetic-to-Real Dehazing Guided by Physical Priors, CVPR 2021"

#: the official test wraps the nets in nn.DataParallel and saves the bare state dict
DATA_PARALLEL_STATE_DICT = CheckpointFacts(strip_prefixes=("module.",))

NETWORKS: dict[str, NetworkVariant] = {
    "psd-ffanet": NetworkVariant(
        build=partial(PSDFFANet, gps=3, blocks=19),
        # input x * 2 - 1; the official test clamps the output to [0, 1] as it is (no rescaling).
        # The 256 x 256 A-Net input only feeds the physics outputs, not the dehazed image.
        io=IOFacts(input_range=(-1.0, 1.0), output_range=(0.0, 1.0), tileable=False, channels_last=True),
        checkpoint=DATA_PARALLEL_STATE_DICT,
        paper=PAPER,
    ),
    "psd-gcanet": NetworkVariant(
        build=partial(PSDGCANet, in_c=4, out_c=3, only_residual=True),
        # GCANet's input; forward already adds the residual to the image
        io=replace(GCANET_IO, prepare=network_input),
        checkpoint=DATA_PARALLEL_STATE_DICT,
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
