"""A generic trainer for any network variant of the registry (see README.md).

The network, its value ranges, normalisation, extra inputs, output selection and padding come
from the variant's :class:`~algorithms.common.network.NetworkVariant` (its ``IOFacts``), so a
network is trained in its own range and released checkpoints fine-tune correctly.

Optional hooks on the network module (duck-typed; a network without them trains with L1 only):

``training_forward(*inputs) -> outputs``
    used instead of ``module(*inputs)`` for training steps (validation always calls the module),
    for networks whose default forward is an inference path (e.g. RIDCP's ``test()``).
``training_losses(outputs, target) -> Mapping[str, Tensor]``
    the network's own auxiliary losses, already weighted, each a scalar tensor; they are added
    to ``l1_weight * L1`` and logged by name (``aux/<name>``). ``outputs`` is exactly what the
    (training) forward returned; ``target`` is the clear crop in the network's output range.

The restored image of ``outputs`` is: the tensor itself; ``outputs[io.output_index]`` for a
tuple/list; ``outputs["image"]`` for a mapping.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from algorithms.common.checkpoint import CheckpointFacts, load_into, load_state_dict_file
from algorithms.common.network import IOFacts, NetworkVariant
from algorithms.common.padding import pad_to_multiple, padded_size, tiled_apply
from algorithms.common.quality import psnr, ssim
from algorithms.common.runtime import resolve_device
from algorithms.errors import DehazeError, UnknownVariantError
from algorithms.registry import Registry, default_registry, sha256_file, weights_store
from algorithms.training.checkpoints import (
    find_latest, load_state, load_weights, prune, save_checkpoint, save_weights,
)
from algorithms.training.data import (
    CropDataset, DatasetError, Pair, StepBatchSampler, clear_images, load_pair, pair_folder, split_by_scene,
)
from algorithms.training.logs import RunLog

log = logging.getLogger(__name__)


class TrainingError(DehazeError):
    code = "training_error"


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.json`` in the run folder."""

    model: str
    data: str
    variant: str | None = None
    #: override the network variant (a key of the algorithm's NETWORKS table); None = the
    #: registry child's ``arch``
    arch: str | None = None
    val_data: str | None = None
    #: share of the scenes held out for validation when ``val_data`` is not given (0 = none)
    val_fraction: float = 0.1
    #: at most this many validation images (whole images; None = all)
    val_max_images: int | None = 100
    #: validate every N steps (0 = only at the end)
    val_every: int = 1000
    #: validate before the first step (None = when starting from released/given weights)
    val_at_start: bool | None = None
    #: images larger than this (either side) are validated in overlapping tiles when the
    #: network is tileable
    val_tile: int = 1024
    steps: int = 10000
    #: stop after this step (checkpoint saved), keeping the schedule of ``steps`` (None = steps)
    stop_at: int | None = None
    batch_size: int = 8
    crop: int = 256
    augment: str = "hflip"  # "none" | "hflip" | "all"
    #: train on (clear, clear) pairs: reconstruction, e.g. codebook pre-training
    reconstruct: bool = False
    lr: float = 4e-4
    min_lr_ratio: float = 0.01
    warmup: int | None = None  # None = 5% of steps, at most 1000
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float = 1.0  # gradient-norm clip; 0 = off
    l1_weight: float = 1.0
    amp: str = "auto"  # "auto" (CUDA: bf16 where supported, else fp16), "bf16", "fp16", "off"
    #: "auto" (released checkpoint when present, else random), "scratch", "released", or a file
    init: str = "auto"
    #: files loaded after ``init``, each holding a subset of the network's tensors (same names
    #: and shapes), e.g. a codebook prior pre-trained with --arch <prior> --reconstruct
    init_parts: tuple[str, ...] = ()
    out: str | None = None
    resume: bool | str = False
    device: str = "auto"
    workers: int = 0
    cache_mb: int = 1024
    seed: int = 0
    log_every: int = 10
    save_every: int = 1000
    keep: int = 2
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ModelSpec:
    algorithm: str
    variant: str | None
    arch: str
    network: NetworkVariant
    #: registry path of the released checkpoint (relative to the weights root), when it applies
    weights_path: str | None
    sha256: str | None = None


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    finished: bool
    init: str
    weights: Path | None
    best_psnr: float | None
    records: list[dict[str, Any]] = field(default_factory=list)
    #: the trained network (on its training device, eval mode)
    network: torch.nn.Module | None = None


# --- the network ----------------------------------------------------------------------------


def _networks_of(module_path: str) -> dict[str, NetworkVariant] | None:
    module_name, _, attr = module_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainingError(f"cannot import {module_name}: {exc}") from exc
    nets = getattr(module, "NETWORKS", None)
    if nets is None:
        nets = getattr(getattr(module, attr or "factory", None), "networks", None)
    return nets


def resolve_model(model: str, variant: str | None = None, arch: str | None = None,
                  registry: Registry | None = None) -> ModelSpec:
    """Registry name / variant -> the NetworkVariant to train (its ``arch``) and the registry
    path of its released weights."""
    reg = registry or default_registry()
    entry = reg.get(model)
    child = entry.variant(variant)
    networks = _networks_of(entry.importPath)
    if not networks:
        raise TrainingError(f"{entry.name} declares no NETWORKS table (a classical prior, or a sampler with its own Dehazer): only single-forward networks train here")
    child_arch = child.arch or entry.arch
    if child_arch is None and len(networks) == 1:
        child_arch = next(iter(networks))
    chosen = arch or child_arch
    if chosen is None:
        raise UnknownVariantError(f"{entry.name}/{child.name}: no arch; pass one of {sorted(networks)}")
    if chosen not in networks:
        raise UnknownVariantError(f"{entry.name}: arch {chosen!r} is not one of {sorted(networks)}")
    same = chosen == child_arch
    return ModelSpec(entry.name, child.name, chosen, networks[chosen],
                     child.path if same else None, child.sha256 if same else None)


class IOAdapter:
    """The network's IOFacts applied to training tensors (the service's pipeline, batched)."""

    def __init__(self, io: IOFacts):
        self.io = io

    def crop_size(self, crop: int) -> int:
        return padded_size(crop, self.io.pad_multiple, self.io.min_size)

    def inputs(self, x01: torch.Tensor) -> tuple[torch.Tensor, ...]:
        lo, hi = self.io.input_range
        x = x01 * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else x01
        if self.io.mean is not None:
            mean = torch.tensor(self.io.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.io.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        out = self.io.prepare(x) if self.io.prepare else x
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def target(self, y01: torch.Tensor) -> torch.Tensor:
        """Clear image in the network's output range ([0, 1] for a "minmax" output)."""
        rng = self.io.output_range
        if rng == "minmax":
            return y01
        lo, hi = rng
        return y01 * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else y01

    def select(self, outputs: Any) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return outputs
        if isinstance(outputs, Mapping):
            return outputs["image"]
        return outputs[self.io.output_index]

    def to01(self, y: torch.Tensor) -> torch.Tensor:
        rng = self.io.output_range
        if rng == "minmax":
            lo, hi = y.min(), y.max()
            return (y - lo) / (hi - lo).clamp_min(1e-12)
        lo, hi = rng
        return (y - lo) / (hi - lo) if (lo, hi) != (0.0, 1.0) else y


def _read_init(path: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    return load_state_dict_file(path, spec.network.checkpoint)


def load_part(net: torch.nn.Module, path: Path) -> int:
    """Load the tensors of ``path`` into ``net``: every tensor must name one of the network's,
    with its shape (a typo or another architecture fails loudly). Returns how many."""
    if not path.is_file():
        raise TrainingError(f"--init-part {path}: no such file")
    part = load_state_dict_file(path, CheckpointFacts())
    own = net.state_dict()
    unknown = [k for k in part if k not in own]
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in part.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if unknown or wrong or not part:
        raise TrainingError(f"--init-part {path.name} does not fit the network: {len(unknown)} unknown tensors "
                            f"(e.g. {unknown[:3]}), {len(wrong)} with other shapes (e.g. {wrong[:3]})"
                            if part else f"--init-part {path.name} holds no tensors")
    with torch.no_grad():
        for k, v in part.items():
            own[k].copy_(v)
    return len(part)


def initialise(net: torch.nn.Module, spec: ModelSpec, init: str, weights_root: Any) -> str:
    """Load the initial weights; returns what was loaded ("scratch", "released:<path>", "file:<path>")."""
    if init in ("scratch", "random"):
        return "scratch"
    if init not in ("auto", "released"):
        path = Path(init)
        if not path.is_file():
            raise TrainingError(f"--init {init}: no such file")
        load_into(net, _read_init(path, spec), what=f"initial weights {path}")
        return f"file:{path}"
    if spec.weights_path is None:
        if init == "released":
            raise TrainingError(f"{spec.algorithm}/{spec.variant} ({spec.arch}) has no released checkpoint in the registry")
        return "scratch"
    store = weights_store(weights_root)
    reason = store.missing_reason(spec.weights_path)
    if reason:
        if init == "released":
            raise TrainingError(f"released checkpoint unavailable: {reason}")
        log.warning("%s; starting from random weights", reason)
        return "scratch"
    path = Path(store.fetch(spec.weights_path))
    if spec.sha256 and sha256_file(path) != spec.sha256:
        raise TrainingError(f"{spec.weights_path}: checksum mismatch with the registry")
    load_into(net, _read_init(path, spec), what=f"{spec.algorithm}/{spec.variant} checkpoint")
    return f"released:{spec.weights_path}"


# --- schedule, precision ----------------------------------------------------------------------


def lr_lambda(steps: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up from ~0 to 1 over ``warmup`` steps, then cosine down to ``min_ratio``.
    Argument: the number of optimizer steps already taken."""

    def f(done: int) -> float:
        if warmup > 0 and done < warmup:
            return (done + 1) / (warmup + 1)
        span = max(1, steps - warmup)
        t = min(1.0, (done - warmup) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


# --- validation -------------------------------------------------------------------------------


@torch.no_grad()
def validate(net: torch.nn.Module, io: IOFacts, pairs: list[Pair], device: torch.device,
             tile: int = 1024, autocast: bool = False) -> dict[str, float]:
    """Mean PSNR/SSIM over whole images, padded per IOFacts (tiled beyond ``tile`` when the
    network allows), outputs quantised to uint8 like the service's."""
    adapter = IOAdapter(io)
    was_training = net.training
    net.eval()

    def run(x01: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x01, io.pad_multiple, io.min_size, io.pad_mode)
        with torch.autocast(device.type, enabled=autocast):
            out = adapter.select(net(*adapter.inputs(padded)))
        return out[:, :, :h, :w].float()

    scores_p, scores_s = [], []
    try:
        for pair in pairs:
            hazy, clear = load_pair(pair)
            x01 = torch.from_numpy(hazy).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            if io.tileable and tile and max(x01.shape[-2:]) > tile:
                y = tiled_apply(run, x01, tile, 64, io.pad_multiple)
            else:
                y = run(x01)
            if y.shape != x01.shape:
                raise TrainingError(f"the network's output {tuple(y.shape)} is not an image like its input "
                                    f"{tuple(x01.shape)}: only image-to-image networks are validated here")
            out = adapter.to01(y)[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
            scores_p.append(psnr(out, clear))
            scores_s.append(ssim(out, clear))
    finally:
        net.train(was_training)
    return {"val_psnr": float(np.mean(scores_p)), "val_ssim": float(np.mean(scores_s)), "val_images": len(pairs)}


# --- the run ----------------------------------------------------------------------------------


def _run_dir(cfg: TrainConfig, spec: ModelSpec) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if isinstance(cfg.resume, str):  # <run>/checkpoints/step_<n>.state.pt
        return Path(cfg.resume).resolve().parent.parent
    return Path("runs") / f"{spec.algorithm}-{spec.variant or spec.arch}"


def _datasets(cfg: TrainConfig) -> tuple[list[Pair], list[Pair]]:
    collect = clear_images if cfg.reconstruct else pair_folder
    pairs = collect(cfg.data)
    if cfg.val_data:
        train_pairs, val_pairs = pairs, collect(cfg.val_data)
    else:
        train_pairs, val_pairs = split_by_scene(pairs, cfg.val_fraction, cfg.seed)
    if not train_pairs:
        raise DatasetError(f"{cfg.data}: no training pairs left after the validation split")
    if cfg.val_max_images is not None:
        val_pairs = val_pairs[: cfg.val_max_images]
    return train_pairs, val_pairs


def train(cfg: TrainConfig, weights_root: Any = None, registry: Registry | None = None) -> TrainResult:
    """Train (or fine-tune, or resume) one network variant; see README.md for the outputs."""
    spec = resolve_model(cfg.model, cfg.variant, cfg.arch, registry)
    run_dir = _run_dir(cfg, spec)
    device = resolve_device(cfg.device)
    adapter = IOAdapter(spec.network.io)
    crop = adapter.crop_size(cfg.crop)
    if crop != cfg.crop:
        log.warning("crop %d -> %d (the network needs multiples of %d, at least %d)", cfg.crop, crop,
                    spec.network.io.pad_multiple, spec.network.io.min_size)

    # resume point
    resume_ckpt = None
    if cfg.resume:
        resume_ckpt = find_latest(run_dir) if cfg.resume is True else _checkpoint_from_path(Path(cfg.resume))
        if resume_ckpt is None:
            raise TrainingError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    elif find_latest(run_dir) is not None:
        raise TrainingError(f"{run_dir} already holds checkpoints: pass --resume to continue, or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)

    train_pairs, val_pairs = _datasets(cfg)

    torch.manual_seed(cfg.seed)
    net = spec.network.build()
    state = None
    if resume_ckpt is not None:
        config_path = run_dir / "config.json"
        saved = json.loads(config_path.read_text()).get("resolved", {}) if config_path.exists() else {}
        for key, ours in (("model", spec.algorithm), ("arch", spec.arch)):
            if saved.get(key) not in (None, ours):
                raise TrainingError(f"--resume: {run_dir} trained {key} {saved[key]!r}, not {ours!r}")
        load_into(net, load_weights(resume_ckpt[1]), what=f"checkpoint {resume_ckpt[1]}")
        state = load_state(resume_ckpt[2])
        init = state.get("init", "resumed")
    else:
        init = initialise(net, spec, cfg.init, weights_root)
        for part in cfg.init_parts:
            n = load_part(net, Path(part))
            init += f" + part:{part} ({n} tensors)"
    net.to(device).train()

    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"{spec.arch}: the network has no trainable parameters")
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))
    warmup = cfg.warmup if cfg.warmup is not None else min(1000, cfg.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.steps, warmup, cfg.min_lr_ratio))
    amp_dtype = _amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start = 0
    best = None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        best = state.get("best_psnr")
    runlog = RunLog(run_dir, resume_step=start if state is not None else None)

    config_json = {"config": cfg.to_json(), "resolved": {
        "model": spec.algorithm, "variant": spec.variant, "arch": spec.arch, "crop": crop,
        "warmup": warmup, "device": str(device), "amp": str(amp_dtype) if amp_dtype else "off", "init": init,
        "train_pairs": len(train_pairs), "val_pairs": len(val_pairs),
        "io": {k: v for k, v in dataclasses.asdict(spec.network.io).items() if k != "prepare"},
    }}
    (run_dir / "config.json").write_text(json.dumps(config_json, indent=2, default=str))

    last = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
    meta = {"model": spec.algorithm, "variant": spec.variant or "", "arch": spec.arch}
    fwd = getattr(net, "training_forward", None) or net
    aux_hook = getattr(net, "training_losses", None)
    val_autocast = device.type == "cuda" and spec.network.io.autocast_ok

    def ckpt(step: int) -> None:
        save_checkpoint(run_dir, step, net, {
            "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None, "best_psnr": best, "init": init,
        }, {**meta, "step": str(step)})
        prune(run_dir, cfg.keep)

    def do_val(step: int) -> None:
        nonlocal best
        if not val_pairs:
            return
        scores = validate(net, spec.network.io, val_pairs, device, cfg.val_tile, val_autocast)
        runlog.append({"kind": "val", "step": step, **scores, "time": time.time()})
        if best is None or scores["val_psnr"] > best:
            best = scores["val_psnr"]
            save_weights(run_dir / "best.safetensors", net, {**meta, "step": str(step), "val_psnr": f"{best:.4f}"})
        runlog.plot()
        bar.set_postfix_str(f"val {scores['val_psnr']:.2f} dB")

    dataset = CropDataset(train_pairs, crop, cfg.seed, cfg.augment, cfg.cache_mb)
    sampler = StepBatchSampler(len(train_pairs), cfg.batch_size, cfg.seed, start + 1, last)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    from tqdm import tqdm

    bar = tqdm(total=last, initial=start, desc=f"train {spec.algorithm}/{spec.variant or spec.arch}",
               unit="step", disable=not cfg.progress, dynamic_ncols=True)
    val_at_start = cfg.val_at_start if cfg.val_at_start is not None else init != "scratch"
    if state is None and val_at_start:
        do_val(0)

    acc: dict[str, float] = {}
    acc_n, n_interval, t_interval, nonfinite = 0, 0, time.perf_counter(), 0
    step = done = start
    try:
        for hazy_u8, clear_u8 in loader:
            step += 1
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout / drop-path replay on resume
            hazy01 = hazy_u8.to(device, non_blocking=True).float().div_(255.0)
            clear01 = clear_u8.to(device, non_blocking=True).float().div_(255.0)
            target = adapter.target(clear01)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = fwd(*adapter.inputs(hazy01))
            image = adapter.select(outputs).float()
            if image.shape != target.shape:
                raise TrainingError(
                    f"{spec.arch}: the network's output {tuple(image.shape)} is not an image like the target "
                    f"{tuple(target.shape)}; only image-to-image networks train here (a network that predicts "
                    "e.g. a transmission map needs its own target)")
            l1 = F.l1_loss(image, target)
            aux_terms = dict(aux_hook(outputs, target)) if aux_hook else {}
            aux = sum((v.float() for v in aux_terms.values()), torch.zeros((), device=device))
            loss = cfg.l1_weight * l1 + aux
            optimizer.zero_grad(set_to_none=True)
            lr_now = optimizer.param_groups[0]["lr"]
            if torch.isfinite(loss):
                nonfinite = 0
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip > 0 else float("inf"))
                scaler.step(optimizer)
                scaler.update()
                acc_n += 1
                for k, v in {"loss": loss.item(), "l1": l1.item(), "aux": aux.item(),
                             "grad_norm": float(grad_norm),
                             **{f"aux/{n}": t.item() for n, t in aux_terms.items()}}.items():
                    acc[k] = acc.get(k, 0.0) + v
            else:  # skip the update (the schedule still advances, so a resumed run stays in step)
                nonfinite += 1
                acc["skipped"] = acc.get("skipped", 0) + 1
                if nonfinite >= 20:
                    raise TrainingError(f"loss is not finite for 20 steps in a row (step {step}); lower --lr")
            scheduler.step()
            done = step
            n_interval += 1
            bar.update(1)
            if (step % cfg.log_every == 0 or step == last) and acc_n:
                now = time.perf_counter()
                rec = {"kind": "train", "step": step, "epoch": round(sampler.epoch_of(step + 1), 4), "lr": lr_now,
                       **{k: (v if k == "skipped" else v / acc_n) for k, v in acc.items()},
                       "sec_per_step": (now - t_interval) / n_interval,
                       "time": time.time()}
                runlog.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr_now:.2e}")
                acc, acc_n, n_interval, t_interval = {}, 0, 0, now
            t_extra = time.perf_counter()
            if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.steps:
                do_val(step)
            if step % cfg.save_every == 0 or step == last:
                ckpt(step)
            t_interval += time.perf_counter() - t_extra  # sec_per_step counts training only
    except KeyboardInterrupt:
        if done > start and (find_latest(run_dir) or (None,))[0] != done:
            ckpt(done)
            log.warning("interrupted: checkpoint saved at step %d (resume with --resume)", done)
        raise
    finally:
        bar.close()

    finished = step >= cfg.steps
    weights = None
    if finished:
        weights = run_dir / "model.safetensors"
        save_weights(weights, net, {**meta, "step": str(step)})
    runlog.plot()
    return TrainResult(run_dir, step, finished, init, weights, best, runlog.records, net.eval())


def _checkpoint_from_path(path: Path):
    from algorithms.training.checkpoints import checkpoint_files

    files = checkpoint_files(path)
    if files is None:
        raise TrainingError(f"--resume {path}: not a checkpoint (expected step_<n>.safetensors + .state.pt)")
    return files


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
