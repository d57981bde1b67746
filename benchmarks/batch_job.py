"""`dehaze batch` (Ray Data actors) vs `dehaze run` (one process) on the same folder.

    python benchmarks/batch_job.py [--model DCP] [-n 40] [--workers 2]
    python benchmarks/batch_job.py --model LKDNet --variant ITS-t --weights-root DIR

A network needs its released weights under DIR (the legacy layout, e.g. a folder holding
``LKDNet -> ../shared/weights/lkdnet``).

Copies the first N SOTS-indoor hazy images to a temp folder, then times each command end to
end as a user runs it (process start, Ray start for batch, model load, all images, writes).
Also prints the images/s each command reports for the work itself.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt, r.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="DCP")
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", default=None)
    ap.add_argument("--weights-root", default=None, help="DEHAZE_WEIGHTS_ROOT for both commands")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.weights_root:
        env["DEHAZE_WEIGHTS_ROOT"] = str(Path(args.weights_root).resolve())
    model = ["--model", args.model] + (["--variant", args.variant] if args.variant else [])
    dehaze = str(Path(sys.executable).parent / "dehaze")
    tmp = Path(tempfile.mkdtemp(prefix="dehaze-batch-bench-"))
    src = tmp / "hazy"
    src.mkdir()
    for p in sorted((SHARED / "data" / "sots-indoor" / "hazy").glob("*.png"))[: args.n]:
        shutil.copy(p, src / p.name)
    try:
        t_run, line_run = timed([dehaze, "run", str(src), *model, "-o", str(tmp / "run"), "--quiet"], env)
        t_batch, line_batch = timed([dehaze, "batch", str(src), str(tmp / "batch"), *model,
                                     "--workers", str(args.workers), "--num-cpus", "1", "--quiet"], env)
        t_resume, line_resume = timed([dehaze, "batch", str(src), str(tmp / "batch"), *model,
                                       "--workers", str(args.workers), "--quiet"], env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# {' '.join(model[1::2])} on {args.n} SOTS-indoor images (620x460), {time.strftime('%Y-%m-%d')}")
    print("| command | wall (s) | images/s (wall) | its own summary |")
    print("|---|---|---|---|")
    print(f"| dehaze run | {t_run:.1f} | {args.n / t_run:.2f} | {line_run} |")
    print(f"| dehaze batch --workers {args.workers} | {t_batch:.1f} | {args.n / t_batch:.2f} | {line_batch} |")
    print(f"| dehaze batch (re-run: all done) | {t_resume:.1f} | - | {line_resume} |")
    print(f"batch vs run, wall clock: {t_run / t_batch:.2f}x")


if __name__ == "__main__":
    main()
