"""SCANet (CVPRW / NTIRE 2023): self-paced semi-curricular attention network for
non-homogeneous dehazing."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.scanet.arch import Generator

PAPER = (
    "Guo et al., SCANet: Self-Paced Semi-Curricular Attention Network for Non-Homogeneous Image "
    "Dehazing, CVPR Workshops (NTIRE) 2023, arXiv:2304.08444"
)

#: RGB in [-1, 1] ((x - 0.5) / 0.5), output x_out (Tanh) in [-1, 1], element 0 of (x_out, m_g).
#: The trunk's two stride-2 convs and two transposed convs return 4*ceil(H/4) x 4*ceil(W/4), so
#: inputs are reflect-padded to a multiple of 4 and the output is cropped back (the official and
#: legacy code neither pad nor crop; the official test.py also resizes by 0.75 first, legacy
#: run.py does not -- neither is done here). The channel attention pools over the whole image:
#: tiles would not be independent.
SCANET_IO = IOFacts(
    input_range=(-1.0, 1.0),
    output_range=(-1.0, 1.0),
    output_index=0,
    pad_multiple=4,
    pad_mode="reflect",
    tileable=False,
)

NETWORKS: dict[str, NetworkVariant] = {
    "scanet": NetworkVariant(
        build=Generator,
        io=SCANET_IO,
        # Gmodel_{40,105,120}.tar: {"state_dict": <nn.DataParallel keys, "module." prefix>, ...}
        checkpoint=CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
