"""The ``dehaze`` command: serve, models, run, batch, eval, train."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _cmd_serve(args: argparse.Namespace) -> int:
    import time

    import ray
    from ray import serve

    from serve_app.app import build_app

    ray.init(num_cpus=args.num_cpus, include_dashboard=args.dashboard, dashboard_host=args.host,
             _metrics_export_port=args.metrics_port, ignore_reinit_error=True)
    serve.start(http_options={"host": args.host, "port": args.port})
    app_args = {}
    if args.profile:
        app_args["profile"] = args.profile
    if args.models:
        app_args["models"] = args.models.split(",")
    serve.run(build_app(app_args), name="dehaze", route_prefix="/", blocking=False)
    print(f"Dehaze Serve is up: http://{args.host}:{args.port}/  (API docs at /docs, models at /v1/models)",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from algorithms.registry import load_registry, variant_unavailable_reason
    from serve_app.settings import get_settings
    from serve_app.storage import make_weights_store

    settings = get_settings()
    reg = load_registry(args.registry or settings.registry_path)
    weights = make_weights_store(settings)
    for entry in reg.algorithms:
        print(f"{entry.name}  [{entry.type}]  {entry.description}")
        for v in entry.variants:
            reason = variant_unavailable_reason(entry, v, weights)
            state = "available" if reason is None else f"unavailable: {reason}"
            print(f"    {v.name:<20} {state}")
    return 0


def _collect(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"dehaze run: {item} does not exist")
    return files


def _param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE parsed as YAML (``steps=10`` -> ("steps", 10))."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{key}: value is not valid YAML ({exc})") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from algorithms.errors import DehazeError
    from algorithms.registry import create, load_registry
    from serve_app import imaging
    from serve_app.settings import get_settings
    from serve_app.storage import make_weights_store

    settings = get_settings()
    files = _collect(args.inputs)
    if not files:
        print("dehaze run: no images found", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = settings.runtime(args.device)
    try:
        dehazer = create(args.model, args.variant, make_weights_store(settings), runtime=runtime,
                         registry=load_registry(args.registry or settings.registry_path), params=dict(args.param))
    except DehazeError as exc:
        print(f"dehaze run: {exc.message}", file=sys.stderr)
        return 2
    failures = []
    for path in tqdm(files, desc=f"{args.model}", unit="img", disable=len(files) < 2 or args.quiet):
        try:
            decoded = imaging.decode_image(path.read_bytes(), settings.max_upload_bytes, settings.max_pixels)
            out = dehazer(decoded.array)
            target = out_dir / f"{path.stem}.{args.format.replace('jpeg', 'jpg')}"
            target.write_bytes(imaging.encode_image(out, args.format, settings.jpeg_quality))
        except DehazeError as exc:
            failures.append((path, exc.message))
    for path, msg in failures:
        print(f"failed: {path}: {msg}", file=sys.stderr)
    print(f"{len(files) - len(failures)} of {len(files)} images written to {out_dir}")
    return 1 if failures else 0


def _cmd_batch(args: argparse.Namespace) -> int:
    import ray

    from algorithms.errors import DehazeError
    from serve_app.batch import BatchJob, run_batch
    from serve_app.settings import get_settings

    job = BatchJob(args.src, args.dst, args.model, args.variant, args.format, args.workers, args.num_cpus,
                   args.num_gpus, args.registry, args.device)
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, num_cpus=None if args.address else args.ray_cpus,
                 include_dashboard=False, log_to_driver=False)
    try:
        summary = run_batch(job, get_settings(), progress=not args.quiet)
    except DehazeError as exc:
        print(f"dehaze batch: {exc.message}", file=sys.stderr)
        return 2
    finally:
        if started:
            ray.shutdown()
    print(summary.render())
    return 1 if summary.failures else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from serve_app.evaluation import EvalError, run_eval

    try:
        report, files = run_eval(args.models, args.data, args.gt, args.output, url=args.url,
                                 token=args.token or os.environ.get("DEHAZE_TOKEN"), limit=args.limit,
                                 device=args.device, threads=args.threads, progress=not args.quiet)
    except EvalError as exc:
        print(f"dehaze eval: {exc}", file=sys.stderr)
        return 2
    print(files["markdown"].read_text().split("## Per image")[0].rstrip())
    print(f"\nreport: {files['html']}  (also {', '.join(p.name for k, p in files.items() if k != 'html')})")
    return 1 if report.failures else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from algorithms.errors import DehazeError
    from algorithms.registry import load_registry
    from algorithms.training.options import config_from_args, summary
    from algorithms.training.trainer import set_threads, train
    from serve_app.settings import settings_with
    from serve_app.storage import make_weights_store

    settings = settings_with({"weights_root": args.weights_root} if args.weights_root else None)
    set_threads(args.threads)
    try:
        result = train(config_from_args(args, settings.device), make_weights_store(settings),
                       load_registry(args.registry or settings.registry_path))
    except DehazeError as exc:
        print(f"dehaze train: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dehaze train: interrupted (checkpoint saved; continue with --resume)", file=sys.stderr)
        return 130
    print(summary(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dehaze", description="Dehaze Serve: image dehazing service and tools")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the Ray Serve application (CPU profile without GPUs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--profile", choices=["auto", "gpu", "cpu"], default=None)
    s.add_argument("--models", help="comma-separated subset of algorithms to deploy")
    s.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray cluster")
    s.add_argument("--dashboard", action="store_true", default=os.environ.get("DEHAZE_DASHBOARD") == "1",
                   help="start the Ray dashboard on port 8265 (env DEHAZE_DASHBOARD=1)")
    s.add_argument("--metrics-port", type=int, default=int(os.environ.get("DEHAZE_METRICS_PORT", "0")) or None,
                   help="Prometheus metrics port of the local Ray cluster (env DEHAZE_METRICS_PORT)")
    s.set_defaults(func=_cmd_serve)

    m = sub.add_parser("models", help="list algorithms, variants and availability")
    m.add_argument("--registry", default=None)
    m.set_defaults(func=_cmd_models)

    r = sub.add_parser("run", help="dehaze files or folders in-process (no Ray)")
    r.add_argument("inputs", nargs="+", help="image files or directories")
    r.add_argument("--model", required=True)
    r.add_argument("--variant", default=None)
    r.add_argument("-o", "--output", required=True, help="output directory")
    r.add_argument("--format", choices=["png", "jpeg", "webp"], default="png")
    r.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="override a registry parameter of the variant (repeatable; VALUE is YAML), "
                        "e.g. --param steps=10 --param seed=3 for a diffusion model")
    r.add_argument("--device", default=None)
    r.add_argument("--registry", default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=_cmd_run)

    b = sub.add_parser("batch", help="dehaze a folder or s3:// prefix on the Ray cluster (Ray Data), resumable",
                       description="Stream every image under SRC through the model on a pool of Ray actors and "
                       "write the results under DST (same relative paths). Outputs that already exist are "
                       "skipped, so an interrupted job resumes. See serve_app/batch.py.")
    b.add_argument("src", help="input folder or s3://bucket/prefix")
    b.add_argument("dst", help="output folder or s3://bucket/prefix")
    b.add_argument("--model", required=True)
    b.add_argument("--variant", default=None)
    b.add_argument("--format", choices=["png", "jpeg", "webp"], default="png")
    b.add_argument("--workers", type=int, default=None, help="actors (default: cluster CPUs / --num-cpus)")
    b.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor (also its torch threads)")
    b.add_argument("--num-gpus", type=float, default=0.0, help="GPU fraction per actor, e.g. 0.25")
    b.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    b.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster")
    b.add_argument("--device", default=None)
    b.add_argument("--registry", default=None)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_cmd_batch)

    e = sub.add_parser("eval", help="PSNR/SSIM/haze score of models on a folder; Markdown/CSV/JSON + HTML report",
                       description="Score models on hazy images (ground truth paired by name, see "
                       "serve_app/evaluation.py) in-process or through a running service (--url).")
    e.add_argument("--models", required=True, help="comma-separated NAME[:VARIANT], e.g. DCP,AODNet:default")
    e.add_argument("--data", required=True, help="folder of hazy images, or with hazy/ and gt/ sub-folders")
    e.add_argument("--gt", default=None, help="folder of ground-truth images (paired by name)")
    e.add_argument("-o", "--output", default="out/eval", help="report folder (default: out/eval)")
    e.add_argument("--url", default=None, help="evaluate through a running service, e.g. http://127.0.0.1:8000")
    e.add_argument("--token", default=None, help="bearer token for --url (env DEHAZE_TOKEN)")
    e.add_argument("--limit", type=int, default=None, help="only the first N hazy images (sorted by name)")
    e.add_argument("--device", default=None, help="in-process device (default: DEHAZE_DEVICE)")
    e.add_argument("--threads", type=int, default=None, help="in-process torch threads")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_eval)
    from algorithms.training.options import add_arguments as add_train_arguments

    t = sub.add_parser("train", help="train or fine-tune a network variant on paired hazy/clear folders",
                       description="Train or fine-tune any registry network (see algorithms/training/README.md).")
    add_train_arguments(t)
    t.set_defaults(func=_cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
