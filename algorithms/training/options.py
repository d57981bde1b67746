"""Command-line options of ``dehaze train`` (kept free of torch imports: ``dehaze --help``
stays fast). serve_app/cli.py adds these to its ``train`` sub-parser."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry name, e.g. gUNet")
    p.add_argument("--variant", default=None, help="registry variant (default: the first); its arch and released weights")
    p.add_argument("--arch", default=None, help="train another network of the algorithm's NETWORKS table (no released init)")
    p.add_argument("--data", required=True, help="dataset folder: hazy/ + gt/ (or clear/, GT/); pairing rules in algorithms/training/README.md")
    p.add_argument("--val-data", default=None, help="validation folder (default: hold out --val-fraction of the scenes)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--val-every", type=int, default=1000, help="validate every N steps (0: only at the end)")
    p.add_argument("--val-max-images", type=int, default=100)
    p.add_argument("--steps", type=int, default=10000, help="total optimizer steps (the cosine schedule's length)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step (checkpoint saved; continue with --resume)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256, help="square crop size (rounded up to the network's padding multiple)")
    p.add_argument("--augment", choices=["none", "hflip", "all"], default="hflip")
    p.add_argument("--reconstruct", action="store_true", help="train on (clear, clear): reconstruction, e.g. codebook pre-training")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate (fine-tuning: try 1e-4 or lower)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of --steps, at most 1000)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto", help="mixed precision, CUDA only")
    p.add_argument("--init", default="auto", help="auto (released checkpoint when present, else random) | scratch | released | FILE")
    p.add_argument("--init-part", action="append", default=[], metavar="FILE",
                   help="after --init, load the tensors of FILE (a subset of the network's, same names and shapes), "
                   "e.g. a codebook prior pre-trained with --arch <prior> --reconstruct; repeatable")
    p.add_argument("--out", default=None, help="run folder (default: runs/<model>-<variant>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or the one named)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: DEHAZE_DEVICE)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: min(4, CPUs-1))")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--weights-root", default=None, help="where released checkpoints are (default: DEHAZE_WEIGHTS_ROOT)")
    p.add_argument("--registry", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, device: str = "auto"):
    from algorithms.training.data import default_workers
    from algorithms.training.trainer import TrainConfig

    return TrainConfig(
        model=args.model, variant=args.variant, arch=args.arch, data=args.data, val_data=args.val_data,
        val_fraction=args.val_fraction, val_every=args.val_every, val_max_images=args.val_max_images,
        steps=args.steps, stop_at=args.stop_at, batch_size=args.batch_size, crop=args.crop, augment=args.augment,
        reconstruct=args.reconstruct, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
        clip=args.clip, amp=args.amp, init=args.init, init_parts=tuple(args.init_part), out=args.out, resume=args.resume,
        device=args.device or device, workers=default_workers() if args.workers is None else args.workers,
        seed=args.seed, log_every=args.log_every, save_every=args.save_every, progress=not args.quiet,
    )


def summary(result) -> str:
    lines = [f"step {result.step}{'' if result.finished else ' (stopped early; continue with --resume)'}; run folder {result.run_dir}"]
    if result.best_psnr is not None:
        lines.append(f"best validation PSNR {result.best_psnr:.2f} dB ({result.run_dir / 'best.safetensors'})")
    if result.weights:
        lines.append(f"final weights {result.weights}: to serve them, copy the file under the weights root and "
                     "point a registry variant at it (path: <...>.safetensors, arch: <network>); "
                     "see algorithms/training/README.md")
    lines.append(f"log {result.run_dir / 'train_log.csv'}, plot {result.run_dir / 'train_plot.png'}")
    return "\n".join(lines)
