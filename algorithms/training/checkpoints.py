"""Training checkpoints: weights in safetensors, training state in a small torch file.

``<run>/checkpoints/step_<n>.safetensors``  the network's state dict (official parameter names,
                                            so the service's checkpoint loader reads it strict)
``<run>/checkpoints/step_<n>.state.pt``     {"step", "optimizer", "scheduler", "scaler",
                                            "best_psnr", "init"}; read with weights_only=True

Files are written to a temporary name and renamed, weights first: a checkpoint counts only when
both files exist, so a crash while saving leaves the previous one intact.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_STEP_RE = re.compile(r"^step_(\d+)\.safetensors$")


def state_dict_for_saving(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent contiguous CPU tensors (safetensors refuses shared memory)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def save_weights(path: Path, net: torch.nn.Module, metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state_dict_for_saving(net), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    _readable(tmp)
    os.replace(tmp, path)
    return path


def _readable(path: Path) -> None:
    """safetensors writes 0600 files; give them the usual umask-based mode (a weights root is
    often read by another user, e.g. the container's)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def save_checkpoint(run_dir: Path, step: int, net: torch.nn.Module, state: dict[str, Any],
                    metadata: dict[str, str] | None = None) -> tuple[Path, Path]:
    folder = Path(run_dir) / "checkpoints"
    weights = save_weights(folder / f"step_{step:08d}.safetensors", net, metadata)
    state_path = folder / f"step_{step:08d}.state.pt"
    tmp = state_path.with_name(state_path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, state_path)
    return weights, state_path


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def checkpoint_files(path: Path) -> tuple[int, Path, Path] | None:
    """(step, weights, state) of a checkpoint named by either of its files."""
    path = Path(path)
    name = path.name.replace(".state.pt", ".safetensors")
    m = _STEP_RE.match(name)
    if not m:
        return None
    weights, state = path.with_name(name), path.with_name(name.replace(".safetensors", ".state.pt"))
    if not (weights.is_file() and state.is_file()):
        return None
    return int(m.group(1)), weights, state


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path, Path]]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [checkpoint_files(p) for p in folder.glob("step_*.safetensors")]
    return sorted(c for c in found if c is not None)


def find_latest(run_dir: Path) -> tuple[int, Path, Path] | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def prune(run_dir: Path, keep: int) -> None:
    """Keep the ``keep`` most recent checkpoints (0 or less keeps all)."""
    if keep <= 0:
        return
    for _, weights, state in list_checkpoints(run_dir)[:-keep]:
        state.unlink(missing_ok=True)
        weights.unlink(missing_ok=True)
