"""Generic training and fine-tuning of any registry network variant (no Ray, no HTTP).

    from algorithms.training import TrainConfig, train
    result = train(TrainConfig(model="gUNet", variant="reside-in-t", data="data/ITS", steps=10000))

See README.md for the dataset pairing rules, the outputs and how to serve the result, and
trainer.py for the optional network hooks (``training_forward``, ``training_losses``).
Names are imported lazily, so ``algorithms.training.options`` (the CLI's) loads without torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DatasetError": "data", "Pair": "data", "clear_images": "data", "pair_folder": "data", "split_by_scene": "data",
    "IOAdapter": "trainer", "ModelSpec": "trainer", "TrainConfig": "trainer", "TrainResult": "trainer",
    "TrainingError": "trainer", "resolve_model": "trainer", "train": "trainer", "validate": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"algorithms.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'algorithms.training' has no attribute {name!r}")
