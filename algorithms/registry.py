"""The model registry: configs/models.yaml -> validated entries -> Dehazers.

Schema (the seed schema, kept): a list of algorithms with ``name, type, description,
importPath, children``; each child (a variant = one released checkpoint) has ``name, type,
description, path``. Optional keys that carry a real need:

- ``arch``      the network variant the child runs (a key of the algorithm's NETWORKS table)
- ``params``    algorithm parameters (classical priors: omega, t0, patch size, ...)
- ``sha256``    checksum of the weights file, verified before loading
- ``id``        the legacy integer modelId of this row; ``legacyIds`` other legacy rows that
                resolve to it (group rows and duplicates of the legacy table)

An algorithm without children is its own single variant (its ``path``/``arch``/``params``).
``importPath`` names a module (or ``module:attribute``) with a ``factory`` callable; it is
imported only when a Dehazer is created, so one broken algorithm never breaks the registry.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from algorithms.base import BuildRequest, Dehazer
from algorithms.common.runtime import RuntimeOptions
from algorithms.errors import RegistryError, UnknownModelError, UnknownVariantError, WeightsUnavailableError

DEFAULT_REGISTRY = Path(__file__).resolve().parents[1] / "configs" / "models.yaml"
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_IMPORT_RE = r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?$"


class VariantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME_RE)
    type: str
    description: str = ""
    path: str | None = None
    arch: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    id: int | None = None
    legacyIds: list[int] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _relative_path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith("/") or "\\" in v or any(part == ".." for part in v.split("/")):
            raise ValueError("must be a relative path inside the weights root (no '..', no leading '/')")
        return v


class AlgorithmEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME_RE)
    type: str
    description: str = ""
    importPath: str = Field(pattern=_IMPORT_RE)
    children: list[VariantEntry] = Field(default_factory=list)
    # single-variant algorithms may carry the variant fields themselves
    path: str | None = None
    arch: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    id: int | None = None
    legacyIds: list[int] = Field(default_factory=list)
    paper: str = ""

    @model_validator(mode="after")
    def _unique_children(self):
        names = [c.name for c in self.children]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate variant names {dup}")
        return self

    @property
    def variants(self) -> list[VariantEntry]:
        """Children, or the algorithm itself as its one variant."""
        if self.children:
            return self.children
        return [
            VariantEntry(
                name=self.name, type=self.type, description=self.description, path=self.path,
                arch=self.arch, params=self.params, sha256=self.sha256, id=None,
            )
        ]

    def variant(self, name: str | None) -> VariantEntry:
        variants = self.variants
        if name is None or name == "":
            return variants[0]
        for v in variants:
            if v.name == name:
                return v
        raise UnknownVariantError(
            f"model {self.name!r} has no variant {name!r}; variants: {[v.name for v in variants]}"
        )


@dataclass(frozen=True)
class Registry:
    algorithms: tuple[AlgorithmEntry, ...]
    source: str

    def get(self, name: str) -> AlgorithmEntry:
        for a in self.algorithms:
            if a.name == name:
                return a
        lowered = {a.name.lower(): a for a in self.algorithms}
        if name.lower() in lowered:
            return lowered[name.lower()]
        raise UnknownModelError(f"unknown model {name!r}")

    def by_legacy_id(self, model_id: int) -> tuple[AlgorithmEntry, VariantEntry]:
        for a in self.algorithms:
            if a.id == model_id or model_id in a.legacyIds:
                return a, a.variants[0]
            for v in a.variants:
                if v.id == model_id or model_id in v.legacyIds:
                    return a, v
        raise UnknownModelError(f"unknown legacy modelId {model_id}")


def _describe_errors(item: dict, index: int, exc: ValidationError) -> list[str]:
    """One line per pydantic error: 'entry <name>, field <path>: <message>'."""
    entry = item.get("name", f"#{index}")
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        if len(loc) >= 2 and loc[0] == "children" and isinstance(loc[1], int):
            children = item.get("children") or []
            child = children[loc[1]] if loc[1] < len(children) else None
            if isinstance(child, dict) and "name" in child:
                field += f" (variant {child['name']!r})"
        lines.append(f"entry {entry!r}, field {field or '<entry>'}: {err['msg']}")
    return lines


def parse_registry(text: str, source: str = "<registry>") -> Registry:
    """Parse and validate registry YAML; errors name the entry and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise RegistryError(f"{source}: the registry must be a non-empty YAML list of algorithms")
    entries = []
    errors: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            errors.append(f"entry #{i}: must be a mapping, got {type(item).__name__}")
            continue
        try:
            entries.append(AlgorithmEntry.model_validate(item))
        except ValidationError as exc:
            errors.extend(_describe_errors(item, i, exc))
    if errors:
        raise RegistryError(f"{source}: invalid registry:\n  " + "\n  ".join(errors))
    names = [e.name for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RegistryError(f"{source}: entry names must be unique; repeated: {dup}")
    ids: dict[int, str] = {}
    for e in entries:
        owned = [(e.id, e.name)] + [(i, e.name) for i in e.legacyIds]
        owned += [(v.id, f"{e.name}/{v.name}") for v in e.children]
        owned += [(i, f"{e.name}/{v.name}") for v in e.children for i in v.legacyIds]
        for i, who in owned:
            if i is None:
                continue
            if i in ids:
                raise RegistryError(f"{source}: entry {who!r}, field id: legacy id {i} already used by {ids[i]!r}")
            ids[i] = who
    return Registry(tuple(entries), source)


def load_registry(path: str | Path | None = None) -> Registry:
    path = Path(path or os.environ.get("DEHAZE_REGISTRY", DEFAULT_REGISTRY))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc}") from exc
    return parse_registry(text, str(path))


@lru_cache(maxsize=4)
def _cached_registry(path: str) -> Registry:
    return load_registry(path)


def default_registry() -> Registry:
    return _cached_registry(str(os.environ.get("DEHAZE_REGISTRY", DEFAULT_REGISTRY)))


def entries(registry: Registry | None = None) -> list[AlgorithmEntry]:
    """The validated algorithm entries."""
    return list((registry or default_registry()).algorithms)


def resolve_factory(entry: AlgorithmEntry) -> Callable:
    """importPath -> the algorithm's factory (imported now, not at registry load)."""
    module_name, _, attr = entry.importPath.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WeightsUnavailableError(f"{entry.name}: cannot import {module_name} ({exc})") from exc
    factory = getattr(module, attr or "factory", None)
    if not callable(factory):
        raise RegistryError(f"entry {entry.name!r}, field importPath: {entry.importPath} has no callable {attr or 'factory'}")
    return factory


# --- weights -----------------------------------------------------------------------------------


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class LocalWeights:
    """Weights root on the local file system, laid out like the legacy ``trained_model/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def missing_reason(self, relpath: str) -> str | None:
        p = self.root / relpath
        if not p.is_file():
            return f"weights file {relpath} not found under {self.root}"
        return None

    def fetch(self, relpath: str) -> Path:
        reason = self.missing_reason(relpath)
        if reason:
            raise WeightsUnavailableError(reason)
        return self.root / relpath


def weights_store(root: Any) -> Any:
    """A weights store from a root: a path, or an object with missing_reason()/fetch()."""
    if root is None:
        root = os.environ.get("DEHAZE_WEIGHTS_ROOT", "./weights")
    if hasattr(root, "fetch") and hasattr(root, "missing_reason"):
        return root
    root = str(root)
    if root.startswith("s3://"):
        raise WeightsUnavailableError(
            "an s3:// weights root needs credentials: pass serve_app.storage.S3Weights (the service does)"
        )
    return LocalWeights(root)


def weight_files(entry: AlgorithmEntry, variant: VariantEntry) -> dict[str, str]:
    """Every weight file of a variant, relative to the weights root: ``path`` under the key
    "path", and params named ``*_path`` (e.g. DA-CLIP's second network) under their names."""
    params = {**entry.params, **variant.params}
    files = {k: v for k, v in params.items() if k.endswith("_path") and isinstance(v, str)}
    if variant.path is not None:
        files["path"] = variant.path
    return files


def variant_unavailable_reason(entry: AlgorithmEntry, variant: VariantEntry, weights: Any) -> str | None:
    """Why this variant cannot be served now (None if it can): cheap checks, no loading."""
    store = weights_store(weights)
    for relpath in weight_files(entry, variant).values():
        reason = store.missing_reason(relpath)
        if reason:
            return reason
    return None


def create(
    name: str,
    variant: str | None = None,
    weights_root: Any = None,
    device: str | None = None,
    runtime: RuntimeOptions | None = None,
    registry: Registry | None = None,
    params: dict[str, Any] | None = None,
) -> Dehazer:
    """Build the Dehazer of ``name`` / ``variant`` (None = first child, or the algorithm itself).

    ``params`` override the registry's (entry, then variant) parameters for this Dehazer only,
    e.g. a diffusion model's ``steps`` and ``seed``; the algorithm's factory validates them."""
    reg = registry or default_registry()
    entry = reg.get(name)
    child = entry.variant(variant)
    runtime = runtime or RuntimeOptions()
    if device is not None:
        runtime = runtime.with_(device=device)
    files = weight_files(entry, child)
    local = {}
    if files:
        store = weights_store(weights_root)
        local = {key: store.fetch(relpath) for key, relpath in files.items()}
    weights_path = local.pop("path", None)
    if child.sha256 and weights_path is not None and sha256_file(weights_path) != child.sha256:
        raise WeightsUnavailableError(
            f"{entry.name}/{child.name}: checksum mismatch for {child.path} (registry sha256 {child.sha256[:12]}...)"
        )
    factory = resolve_factory(entry)
    params = {**entry.params, **child.params, **(params or {})}
    request = BuildRequest(
        algorithm=entry.name, variant=child.name, arch=child.arch or entry.arch, params=params,
        weights_path=weights_path, runtime=runtime, extra_weights=local,
    )
    dehazer = factory(request)
    dehazer.algorithm, dehazer.variant = entry.name, child.name
    return dehazer
