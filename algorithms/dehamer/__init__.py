"""Dehamer (Guo et al., CVPR 2022): one architecture, four released checkpoints (dense, NH, indoor, outdoor)."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.dehamer.arch import Dehamer

PAPER = (
    "Guo, Yan, Anwar, Cong, Ren, Li. Image Dehazing Transformer with Transmission-Aware 3D Position "
    "Embedding. CVPR 2022"
)

#: official val_data.py / test_PSNR.py: ToTensor, Normalize(mean, std), H and W multiples of 16 (the
#: official code crops; here the image is reflect-padded and the output cropped back); the output is
#: already in [0, 1]. Not tileable: instance norm, the per-image transmission maximum of the position
#: embedding and the attention poolings are global.
IO = IOFacts(
    mean=(0.64, 0.6, 0.58),
    std=(0.14, 0.15, 0.152),
    pad_multiple=16,
    min_size=16,
    tileable=False,
)
#: released .pt files: a plain state dict saved from nn.DataParallel ("module.<name>")
CHECKPOINT = CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",))

NETWORKS: dict[str, NetworkVariant] = {
    "dehamer": NetworkVariant(build=Dehamer, io=IO, checkpoint=CHECKPOINT, paper=PAPER),
}

factory = network_factory(NETWORKS)
