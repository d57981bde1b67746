"""Run-time options shared by every network Dehazer: device, tiling, threads, autocast.

The serving layer and the CLI build one of these from their settings; algorithms never read the
environment themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RuntimeOptions:
    #: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: images with more pixels than tile_size**2 are processed in overlapping tiles
    tile_size: int = 1024
    #: overlap between neighbouring tiles (blended linearly)
    tile_overlap: int = 64
    #: torch intra-op threads; None leaves torch's default
    threads: int | None = None
    #: fp16/bf16 autocast on CUDA for networks on the per-network allow-list
    autocast: bool = True
    #: channels-last memory format for the network and its input: None = where the network's
    #: IOFacts.channels_last says it helps (measured by benchmarks/fastpaths.py), True/False = force
    channels_last: bool | None = None
    #: torch.compile the network (dynamic shapes); off by default: on CPU it costs a long first
    #: call per new shape for little gain (benchmarks/fastpaths.py)
    compile: bool = False

    def with_(self, **changes) -> "RuntimeOptions":
        return replace(self, **changes)


def resolve_device(name: str):
    """Turn "auto"/"cpu"/"cuda[:n]" into a torch.device; "auto" prefers CUDA."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device
