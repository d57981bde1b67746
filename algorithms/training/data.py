"""Paired hazy/clear folder datasets, deterministic random crops and flips.

Pairing rules (see README.md): a dataset folder holds one folder of hazy images and one of clear
images, found by name (case-insensitive):

- hazy:  ``hazy``, ``haze``, ``input``, ``inputs``
- clear: ``gt``, ``clear``, ``target``, ``targets``, ``groundtruth``, ``ground_truth``

Each hazy image is paired with the first clear image (stems compared case-insensitively, any
image extension) found by these rules, in this order:

1. same stem:                 ``hazy/0001.png``            -> ``gt/0001.png`` (or .jpg, ...)
2. O-HAZE / NH-HAZE / Dense-Haze: a stem ending in ``hazy`` (separator ``_`` or ``-``) with
   that token replaced by ``GT`` or ``clear``, or removed:
                              ``hazy/27_outdoor_hazy.jpg`` -> ``GT/27_outdoor_GT.jpg``,
                              ``hazy/01_hazy.png``         -> ``GT/01_GT.png``
3. RESIDE: the stem up to the first ``_`` is the scene:
                              ``hazy/1400_1.png`` (SOTS), ``hazy/1_1_0.90179.png`` (ITS),
                              ``hazy/0001_0.8_0.2.jpg`` (OTS) -> ``gt/1400.png``, ``clear/1.png``, ...

Hazy images that pair with nothing are reported (a warning with a count and examples); when
nothing pairs at all, :class:`DatasetError` says what was found and which rules were tried.
A pair whose two images differ in size is centre-cropped to the common size (the SOTS-indoor
convention: 640x480 ground truth around a 620x460 hazy image).

Randomness is a pure function of ``(seed, step, slot)``: the image drawn, its crop and its
flips do not depend on worker processes or on where a run was resumed, so an interrupted and
resumed run sees exactly the batches an uninterrupted one sees.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from algorithms.errors import DehazeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
HAZY_DIRS = ("hazy", "haze", "input", "inputs")
CLEAR_DIRS = ("gt", "clear", "target", "targets", "groundtruth", "ground_truth")
PAIRING_RULES = (
    "1) same stem (hazy/0001.png -> gt/0001.png); "
    "2) O-HAZE/NH-HAZE: '<x>_hazy' -> '<x>_GT' / '<x>_clear' / '<x>' (hazy/27_outdoor_hazy.jpg -> GT/27_outdoor_GT.jpg); "
    "3) RESIDE: the scene before the first '_' (hazy/1400_1.png -> gt/1400.png)"
)


class DatasetError(DehazeError):
    """A dataset folder has no usable pairs (or cannot be read)."""

    code = "bad_dataset"


@dataclass(frozen=True)
class Pair:
    hazy: Path
    clear: Path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _child_dir(root: Path, names: Sequence[str]) -> Path | None:
    if not root.is_dir():
        return None
    children = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for name in names:
        if name in children:
            return children[name]
    return None


def _candidates(stem: str) -> Iterator[str]:
    """Clear-image stems (lower case) a hazy stem may pair with, in rule order."""
    s = stem.lower()
    yield s  # rule 1
    for sep in ("_", "-"):  # rule 2
        if s.endswith(sep + "hazy"):
            prefix = s[: -len(sep + "hazy")]
            yield f"{prefix}{sep}gt"
            yield f"{prefix}{sep}clear"
            yield prefix
    if "_" in s:  # rule 3
        yield s.split("_", 1)[0]


def pair_folder(root: str | Path, hazy_dir: str | Path | None = None, clear_dir: str | Path | None = None) -> list[Pair]:
    """All (hazy, clear) pairs of a dataset folder, sorted by hazy path (rules: module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    hazy = Path(hazy_dir) if hazy_dir else _child_dir(root, HAZY_DIRS)
    clear = Path(clear_dir) if clear_dir else _child_dir(root, CLEAR_DIRS)
    if hazy is None or clear is None:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"{root}: expected a hazy folder (one of {list(HAZY_DIRS)}) and a clear folder (one of "
            f"{list(CLEAR_DIRS)}), case-insensitive; found sub-folders {found}"
        )
    hazy_images, clear_images = _images(hazy), _images(clear)
    by_stem: dict[str, Path] = {}
    for p in clear_images:
        key = p.stem.lower()
        if key in by_stem:
            raise DatasetError(f"{clear}: two clear images share the stem {p.stem!r}: {by_stem[key].name}, {p.name}")
        by_stem[key] = p
    pairs, unpaired = [], []
    for h in hazy_images:
        match = next((by_stem[c] for c in _candidates(h.stem) if c in by_stem), None)
        if match is None:
            unpaired.append(h.name)
        else:
            pairs.append(Pair(h, match))
    if not pairs:
        raise DatasetError(
            f"{root}: no hazy/clear pairs: {len(hazy_images)} images in {hazy.name}/, {len(clear_images)} in "
            f"{clear.name}/ (e.g. hazy {[p.name for p in hazy_images[:3]]}, clear "
            f"{[p.name for p in clear_images[:3]]}); pairing rules: {PAIRING_RULES}"
        )
    if unpaired:
        log.warning("%s: %d of %d hazy images have no clear image (e.g. %s)", root, len(unpaired),
                    len(hazy_images), unpaired[:3])
    return pairs


def clear_images(root: str | Path) -> list[Pair]:
    """Reconstruction pairs (clear, clear): the clear folder's images, or the folder's own."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    folder = _child_dir(root, CLEAR_DIRS) or root
    images = _images(folder)
    if not images:
        raise DatasetError(f"{root}: no clear images (looked in {folder}; suffixes {list(IMAGE_SUFFIXES)})")
    return [Pair(p, p) for p in images]


def split_by_scene(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out ``fraction`` of the clear images (scenes) with all their hazy versions, so no
    scene is in both splits. Returns (train, val); val is empty when fraction is 0 or there is
    only one scene."""
    scenes = sorted({p.clear for p in pairs})
    if fraction <= 0 or len(scenes) < 2:
        return list(pairs), []
    k = min(len(scenes) - 1, max(1, round(fraction * len(scenes))))
    order = np.random.default_rng(seed + 7919).permutation(len(scenes))
    held = {scenes[i] for i in order[:k]}
    return [p for p in pairs if p.clear not in held], [p for p in pairs if p.clear in held]


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def center_crop_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y0 : y0 + h, x0 : x0 + w]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(hazy, clear) uint8 RGB arrays of one size (centre-cropped to the common size)."""
    hazy = read_rgb(pair.hazy)
    clear = hazy if pair.clear == pair.hazy else read_rgb(pair.clear)
    if hazy.shape != clear.shape:
        h, w = min(hazy.shape[0], clear.shape[0]), min(hazy.shape[1], clear.shape[1])
        hazy, clear = center_crop_to(hazy, h, w), center_crop_to(clear, h, w)
    return hazy, clear


class PairCache:
    """Decoded pairs kept in memory up to a byte budget (first in, first out)."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.items: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.used = 0

    def get(self, index: int, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        hit = self.items.get(index)
        if hit is not None:
            return hit
        value = load_pair(pair)
        size = value[0].nbytes + (value[1].nbytes if value[1] is not value[0] else 0)
        if size <= self.budget:
            while self.items and self.used + size > self.budget:
                old = self.items.pop(next(iter(self.items)))
                self.used -= old[0].nbytes + (old[1].nbytes if old[1] is not old[0] else 0)
            self.items[index] = value
            self.used += size
        return value


def _pad_reflect(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    return img


def random_crop(hazy: np.ndarray, clear: np.ndarray, size: int, rng: np.random.Generator,
                augment: str = "hflip") -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop at the same place in both images (mirror-padded when an image
    is smaller), then flips: ``hflip`` (left-right, p=0.5), ``all`` (also up-down and 90-degree
    rotations), ``none``."""
    hazy, clear = _pad_reflect(hazy, size, size), _pad_reflect(clear, size, size)
    h, w = hazy.shape[:2]
    y0 = int(rng.integers(0, h - size + 1))
    x0 = int(rng.integers(0, w - size + 1))
    a, b = hazy[y0 : y0 + size, x0 : x0 + size], clear[y0 : y0 + size, x0 : x0 + size]
    if augment in ("hflip", "all") and rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    if augment == "all":
        if rng.random() < 0.5:
            a, b = a[::-1], b[::-1]
        k = int(rng.integers(0, 4))
        a, b = np.rot90(a, k), np.rot90(b, k)
    return a, b


def to_chw_uint8(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class CropDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by ``(step, slot, index)``: the crop and flips of a key are a
    pure function of ``(seed, step, slot)``. Items are uint8 C x H x W tensors (hazy, clear)."""

    def __init__(self, pairs: list[Pair], crop: int, seed: int, augment: str = "hflip", cache_mb: int = 1024):
        self.pairs = pairs
        self.crop = crop
        self.seed = seed
        self.augment = augment
        self.cache_bytes = cache_mb << 20
        self._cache: PairCache | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int, int]):
        step, slot, index = key
        if self._cache is None:  # one per worker process
            info = torch.utils.data.get_worker_info()
            self._cache = PairCache(self.cache_bytes // (info.num_workers if info else 1))
        hazy, clear = self._cache.get(index, self.pairs[index])
        rng = np.random.default_rng([self.seed, step, slot])
        a, b = random_crop(hazy, clear, self.crop, rng, self.augment)
        return to_chw_uint8(a), to_chw_uint8(b)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for steps ``first..last``, the batch of keys ``(step, slot, index)``. Images are
    drawn epoch by epoch from a seeded permutation, so each epoch sees every pair once."""

    def __init__(self, n: int, batch_size: int, seed: int, first: int, last: int):
        self.n, self.batch_size, self.seed, self.first, self.last = n, batch_size, seed, first, last
        self._perms: dict[int, np.ndarray] = {}

    def _index(self, position: int) -> int:
        epoch = position // self.n
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perms[epoch][position % self.n])

    def epoch_of(self, step: int) -> float:
        return (step - 1) * self.batch_size / self.n

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)

    def __iter__(self):
        for step in range(self.first, self.last + 1):
            base = (step - 1) * self.batch_size
            yield [(step, slot, self._index(base + slot)) for slot in range(self.batch_size)]


def default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1))
