"""Whole pickled nn.Modules (MSBDN's release format) are read without running their code.

A small module is pickled with ``torch.save(module)`` in both torch formats. Its classes live
in a throw-away Python module that is removed from ``sys.modules`` before loading (so any
attempt to import them fails), and every class in it counts its instantiations; MSBDN's own
blocks inside it are watched through ``__setstate__``.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import types
import warnings

import pytest
import torch
from torch import nn

from algorithms.common.checkpoint import CheckpointFacts, load_pickled_module_state, load_state_dict_file
from algorithms.errors import CheckpointFormatError
from algorithms.msbdn.arch import EncoderDFF, MSBDN, ResidualBlock

PICKLED_ONLY = "pickled_only_models"  # the module name recorded in the pickle
CREATED: list[str] = []  # instantiations of the pickled-only classes


def _pickled_only_classes() -> types.ModuleType:
    module = types.ModuleType(PICKLED_ONLY)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            CREATED.append("Head.__init__")
            self.norm = nn.BatchNorm2d(16)  # buffers, including an int64 counter
            self.register_buffer("scale", torch.linspace(0, 1, 16).view(1, 16, 1, 1))
            self.register_buffer("cache", torch.ones(3), persistent=False)
            self.frozen = nn.Parameter(torch.randn(4), requires_grad=False)

        def __setstate__(self, state):
            CREATED.append("Head.__setstate__")
            super().__setstate__(state)

    class TinyDehazer(nn.Module):
        def __init__(self):
            super().__init__()
            CREATED.append("TinyDehazer.__init__")
            self.body = ResidualBlock(16)
            self.fusion = EncoderDFF(16, 3)
            self.head = Head()
            self.unused = None  # a None child, as optional submodules leave

        def __setstate__(self, state):
            CREATED.append("TinyDehazer.__setstate__")
            super().__setstate__(state)

    for cls in (Head, TinyDehazer):
        cls.__module__ = PICKLED_ONLY
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    return module


@pytest.fixture(scope="module")
def pickled_module(tmp_path_factory):
    """(module, {format: path}) saved while the classes were importable, then made unimportable."""
    fake = _pickled_only_classes()
    sys.modules[PICKLED_ONLY] = fake
    try:
        torch.manual_seed(0)
        module = fake.TinyDehazer()
        module.head.norm.running_mean.uniform_()
        module.head.norm.num_batches_tracked.fill_(7)
        out = tmp_path_factory.mktemp("pickled")
        paths = {"zip": out / "model.pkl", "legacy": out / "model_legacy.pkl"}
        with warnings.catch_warnings():  # "couldn't retrieve source code" of the fake module
            warnings.simplefilter("ignore", UserWarning)
            torch.save(module, paths["zip"])
            torch.save(module, paths["legacy"], _use_new_zipfile_serialization=False)
    finally:
        del sys.modules[PICKLED_ONLY]
    return module, paths


@pytest.fixture
def no_code_runs(monkeypatch):
    """Fail on any use of the real classes while loading."""
    CREATED.clear()
    calls = []
    for cls in (EncoderDFF, ResidualBlock, MSBDN, nn.BatchNorm2d, nn.PReLU, nn.Conv2d):
        monkeypatch.setattr(cls, "__setstate__", lambda self, state, _c=cls: calls.append(_c.__name__), raising=False)
    yield calls
    assert CREATED == [], f"pickled classes were instantiated: {CREATED}"
    assert calls == [], f"real classes were unpickled: {calls}"
    assert PICKLED_ONLY not in sys.modules


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_state_dict_equals_module_state_dict(pickled_module, fmt, no_code_runs):
    module, paths = pickled_module
    sd = load_pickled_module_state(paths[fmt])
    want = module.state_dict()
    assert list(sd) == list(want)  # same keys in the same order, non-persistent buffer left out
    for k, v in want.items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
        assert torch.equal(sd[k], v), k
        assert not sd[k].requires_grad


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_pickled_module_through_checkpoint_facts(pickled_module, fmt, no_code_runs):
    """The path the registry takes (CheckpointFacts(pickled_module=True)), strict load."""
    module, paths = pickled_module
    sd = load_state_dict_file(paths[fmt], CheckpointFacts(pickled_module=True))
    rebuilt = _pickled_only_classes().TinyDehazer()
    rebuilt.load_state_dict(sd, strict=True)
    CREATED.clear()  # that instantiation is ours, not the loader's
    x = torch.rand(1, 16, 8, 8)
    earlier = [torch.rand(1, 4, 32, 32), torch.rand(1, 8, 16, 16)]
    with torch.no_grad():
        assert torch.equal(rebuilt.fusion(rebuilt.body(x), earlier), module.fusion(module.body(x), earlier))


def test_dict_wrapped_module(tmp_path, no_code_runs):
    """{"model": module, "epoch": n} files give the module's state."""
    block = ResidualBlock(4)
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "model": block}, path, _use_new_zipfile_serialization=False)
    sd = load_pickled_module_state(path)
    assert list(sd) == list(block.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in block.state_dict().items())


def test_state_dict_beside_pickled_arguments(tmp_path, no_code_runs):
    """{"model": state_dict, "args": Namespace} needs the unpickler; the wrapper is then unwrapped."""
    block = ResidualBlock(4)
    path = tmp_path / "with_args.pth"
    torch.save({"model": block.state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)
    sd = load_state_dict_file(path, CheckpointFacts(pickled_module=True))
    assert list(sd) == list(block.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in block.state_dict().items())


def test_code_in_pickle_is_not_run(tmp_path):
    """A pickle that would call os.system gets a placeholder instead, and no state."""

    class Exploit:
        def __reduce__(self):
            import os

            return os.system, ("echo pwned > " + str(tmp_path / "pwned"),)

    path = tmp_path / "evil.pkl"
    torch.save({"model": Exploit()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointFormatError):
        load_state_dict_file(path, CheckpointFacts(pickled_module=True))
    assert not (tmp_path / "pwned").exists()


def test_garbage_is_a_format_error(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]) + b"rest")
    with pytest.raises(CheckpointFormatError):
        load_pickled_module_state(path)
