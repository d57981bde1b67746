"""Loading released checkpoints in every layout the official repositories used.

Formats: legacy (non-zip) and zip ``torch.save`` files whatever their extension (.pth, .pt,
.pk, .pkl, .tar or none), and safetensors. Everything is read with ``weights_only=True``; a
file that needs arbitrary code to unpickle (a whole pickled ``nn.Module``) is read by
:func:`load_pickled_module_state`, which rebuilds only tensors and plain containers and never
imports or calls the classes named in the pickle.

Layout facts (which wrapper key holds the state dict, which prefixes to strip, a per-network
key remapping) are data on the network variant: :class:`CheckpointFacts`.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from algorithms.errors import CheckpointFormatError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CheckpointFacts:
    #: wrapper keys tried in order when the file holds a dict around the state dict
    unwrap: tuple[str, ...] = ("state_dict", "params_ema", "params", "model", "net", "generator")
    #: key prefixes removed (e.g. "module." left by DataParallel)
    strip_prefixes: tuple[str, ...] = ("module.",)
    #: per-network hook: state dict as released -> state dict with our (official) names
    remap: Callable[[StateDict], StateDict] | None = None
    #: the release is a whole pickled nn.Module (e.g. MSBDN): read it without running its code
    pickled_module: bool = False


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_checkpoint_file(path: str | Path, pickled_module: bool = False) -> Any:
    """Read a checkpoint file into Python objects without executing code from it."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if _looks_like_safetensors(path, head):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a format error
            raise CheckpointFormatError(f"{path.name}: not a valid safetensors file ({exc})") from exc
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        raise CheckpointFormatError(f"{path.name}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    if pickled_module:
        return load_pickled_module_state(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointFormatError(
            f"{path.name}: the checkpoint needs code to unpickle (e.g. a pickled nn.Module); refusing to run it"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointFormatError(f"{path.name}: unreadable or truncated checkpoint ({exc})") from exc


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    """By content, whatever the extension (a fine-tuned .safetensors may replace a released .pth):
    an 8-byte little-endian header length followed by a JSON object. Torch files start with a
    zip ("PK") or pickle (0x80) signature instead."""
    if len(head) < 8:
        return False
    n = int.from_bytes(head, "little")
    if not 2 <= n <= 100_000_000:
        return False
    with open(path, "rb") as fh:
        fh.seek(8)
        return fh.read(1) == b"{"


def extract_state_dict(obj: Any, facts: CheckpointFacts = CheckpointFacts()) -> StateDict:
    """Unwrap, strip prefixes and remap: file contents -> state dict with official names."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    seen = 0
    while not _is_tensor_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointFormatError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
        key = next((k for k in facts.unwrap if k in obj), None)
        if key is None:
            raise CheckpointFormatError(
                f"checkpoint is a dict with keys {sorted(map(str, obj))[:8]} but none of the "
                f"known wrappers {list(facts.unwrap)}"
            )
        obj = obj[key]
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        seen += 1
        if seen > 4:
            raise CheckpointFormatError("checkpoint nests wrappers more than 4 deep")
    sd: StateDict = OrderedDict()
    for k, v in obj.items():
        for prefix in facts.strip_prefixes:
            if k.startswith(prefix):
                k = k[len(prefix) :]
                break
        sd[k] = v
    if facts.remap is not None:
        sd = facts.remap(sd)
    return flush_subnormals(sd)


def flush_subnormals(sd: StateDict) -> StateDict:
    """Zero float weights below the smallest normal number. Some releases (AOD-Net,
    Light-DehazeNet) hold thousands of subnormals that make CPU convolutions 20-30x slower;
    zeroing them changes no output measurably (|w| < 1.2e-38)."""
    out: StateDict = OrderedDict()
    for k, v in sd.items():
        if v.is_floating_point():
            tiny = torch.finfo(v.dtype).tiny
            if bool((v != 0).logical_and(v.abs() < tiny).any()):
                v = v.masked_fill(v.abs() < tiny, 0.0)
        out[k] = v
    return out


def load_state_dict_file(path: str | Path, facts: CheckpointFacts = CheckpointFacts()) -> StateDict:
    return extract_state_dict(read_checkpoint_file(path, facts.pickled_module), facts)


def load_into(module: torch.nn.Module, sd: StateDict, what: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with an error message that lists the mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[:3]})")
        raise CheckpointFormatError(f"{what} does not match the network: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


# --- whole pickled modules, read safely ------------------------------------------------------


class _Opaque:
    """Stands in for any class named in a pickle: records its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __call__(self, *args, **kwargs):  # a placeholder instance used as a reduce callable
        return _Opaque(*args)


def _opaque_class(module: str, name: str):
    return type(name, (_Opaque,), {"__module__": f"opaque.{module}"})


def _rebuild_from_type(func, new_type, args, state):
    """``torch._tensor._rebuild_from_type_v2`` without the subclass and its Python state."""
    return func(*args)


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return torch.nn.Parameter(data, requires_grad)


class _StorageType:
    """A ``torch.<Type>Storage`` named in a pickle, reduced to the dtype of its elements."""

    def __init__(self, name: str):
        if name == "UntypedStorage":
            self.dtype = torch.uint8
        else:
            self.dtype = torch.storage._get_dtype_from_pickle_storage_type(name)


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds tensors (via torch's own rebuild functions) and plain containers; every other
    global (model classes, functions) becomes an inert placeholder class, never imported.

    ``persistent_load`` resolves torch's persistent ids: ``("storage", storage_type, key,
    location, numel[, view_metadata])`` through ``storage_loader(storage_type, key, numel,
    view_metadata)``, and the legacy format's ``("module", class, source_file, source)`` to the
    (placeholder) class.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,  # protocol-2 pickles name builtins the Python 2 way
        ("__builtin__", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): torch._utils._rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "Size"): torch.Size,
    }

    def __init__(self, file, storage_loader: Callable[..., Any]):
        super().__init__(file)
        self._storage_loader = storage_loader

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        return _opaque_class(module, name)

    def persistent_load(self, pid):
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            return pid[1]
        if kind != "storage":
            raise CheckpointFormatError(f"unknown persistent id {kind!r} in the pickle")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        return self._storage_loader(storage_type, str(key), numel, view_metadata)


def _typed(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _load_zip_pickle(path: Path) -> Any:
    """The object of a zip-format ``torch.save`` file (``<root>/data.pkl`` + ``<root>/data/<key>``)."""
    with zipfile.ZipFile(path) as zf:
        root = zf.namelist()[0].split("/")[0]
        storages: dict[str, torch.UntypedStorage] = {}

        def storage_loader(storage_type, key, _numel, _view):
            if key not in storages:
                raw = bytearray(zf.read(f"{root}/data/{key}"))
                storages[key] = (
                    torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                )
            return _typed(storages[key], storage_type.dtype)

        try:
            pkl = zf.read(f"{root}/data.pkl")
        except KeyError as exc:
            raise CheckpointFormatError(f"{path.name}: zip file without data.pkl") from exc
        return _SafeUnpickler(io.BytesIO(pkl), storage_loader).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _HeaderUnpickler(pickle.Unpickler):
    """For the legacy format's plain pickles (numbers, strings, dicts and lists of them)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} outside the object pickle")


def _load_legacy_pickle(path: Path) -> Any:
    """The object of a legacy (non-zip) ``torch.save`` file: pickles of the magic number, the
    protocol version, sys info, the object and the sorted storage keys, then per key an int64
    element count followed by the storage's raw little-endian bytes."""
    with open(path, "rb") as fh:
        try:
            magic = _HeaderUnpickler(fh).load()
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is not a torch file
            raise CheckpointFormatError(f"{path.name}: not a torch checkpoint ({exc})") from exc
        if magic != _LEGACY_MAGIC:
            raise CheckpointFormatError(f"{path.name}: not a torch checkpoint (bad magic number)")
        _HeaderUnpickler(fh).load()  # protocol version
        sys_info = _HeaderUnpickler(fh).load()
        if not sys_info.get("little_endian", True):
            raise CheckpointFormatError(f"{path.name}: big-endian legacy checkpoints are not supported")

        storages: dict[str, torch.UntypedStorage] = {}
        views: dict[str, torch.storage.TypedStorage] = {}

        def storage_loader(storage_type, key, numel, view):
            dtype = storage_type.dtype
            itemsize = torch._utils._element_size(dtype)
            if key not in storages:  # filled from the raw section once the pickle is read
                storages[key] = torch.UntypedStorage(numel * itemsize)
            if view is None:
                return _typed(storages[key], dtype)
            view_key, offset, size = view
            if view_key not in views:
                start = offset * itemsize
                views[view_key] = _typed(storages[key][start : start + size * itemsize], dtype)
            return views[view_key]

        obj = _SafeUnpickler(fh, storage_loader).load()
        for key in _HeaderUnpickler(fh).load():
            storage = storages[str(key)]
            fh.read(8)  # element count; the size in bytes is already known from the pickle
            buffer = torch.empty(0, dtype=torch.uint8).set_(storage)
            if fh.readinto(memoryview(buffer.numpy())) != storage.nbytes():
                raise CheckpointFormatError(f"{path.name}: truncated storage {key}")
    return obj


def load_pickled_module_state(path: str | Path) -> StateDict | dict[str, Any]:
    """State dict of a whole pickled ``nn.Module`` (zip or legacy torch file), code never run."""
    path = Path(path)
    try:
        obj = _load_zip_pickle(path) if zipfile.is_zipfile(path) else _load_legacy_pickle(path)
    except CheckpointFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed pickle can fail in many ways
        raise CheckpointFormatError(f"{path.name}: unreadable pickled checkpoint ({exc})") from exc
    return _unwrap_opaque_module(obj)


def _module_states(obj: Any, prefix: str, out: StateDict) -> None:
    """Walk placeholders of nn.Modules like ``Module.state_dict`` does: own parameters, own
    persistent buffers, then the children in order."""
    state = getattr(obj, "_state", None) if isinstance(obj, _Opaque) else None
    if not isinstance(state, dict):
        return
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor) and not (group == "_buffers" and name in non_persistent):
                out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        _module_states(child, f"{prefix}{name}.", out)


def _is_module_placeholder(obj: Any) -> bool:
    return isinstance(obj, _Opaque) and isinstance(getattr(obj, "_state", None), dict) and "_parameters" in obj._state


def _unwrap_opaque_module(obj: Any) -> StateDict | dict[str, Any]:
    """The pickled object -> state dict: a module placeholder, a dict holding one (e.g.
    ``{"model": module, "epoch": 3}``), or already a plain state dict. A dict without a module
    (a state dict next to pickled training arguments) is returned as a plain dict, for
    :func:`extract_state_dict` to unwrap."""
    if _is_tensor_dict(obj):
        return OrderedDict((k, v.detach()) for k, v in obj.items())
    if isinstance(obj, Mapping):
        module = next((v for v in obj.values() if _is_module_placeholder(v)), None)
        if module is None:
            return dict(obj)
        obj = module
    out: StateDict = OrderedDict()
    _module_states(obj, "", out)
    if not out:
        raise CheckpointFormatError("no nn.Module state found in the pickled checkpoint")
    return out
