"""``dehaze batch SRC DST``: dehaze every image under a folder or S3 prefix on the Ray cluster.

The job streams the images through Ray Data: ``map_batches`` on a pool of actors, each holding
one Dehazer built by the same registry code as serving (GPU fractions as in serving with
``--num-gpus``). Each actor reads its images from SRC, dehazes them and writes the results to
DST itself, so only keys and short status rows travel through Ray's object store.

- SRC / DST: a local directory or ``s3://bucket/prefix`` (endpoint and credentials from the
  ``DEHAZE_S3_*`` settings). Outputs keep the relative path, with the suffix of ``--format``.
- Resumable: images whose output already exists in DST are skipped (listed before the run, and
  checked again by the worker). Writes are atomic (a temporary file renamed into place on disk;
  a single PUT on S3), so an interrupted job never leaves a half-written output that a re-run
  would skip.
- A failure (undecodable file, too many pixels, ...) is recorded with its reason and the job
  goes on; the summary lists them and the exit status is 1.
"""
from __future__ import annotations

import io
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
FORMAT_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


class Location(ABC):
    """A tree of files addressed by relative POSIX paths: a local folder or an S3 prefix."""

    @abstractmethod
    def list(self) -> list[str]: ...

    @abstractmethod
    def read(self, rel: str) -> bytes: ...

    @abstractmethod
    def write(self, rel: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def exists(self, rel: str) -> bool: ...


def _safe_rel(rel: str) -> str:
    """A relative path that stays inside its location (no absolute paths, no '..')."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\x00" in rel:
        raise ValueError(f"unsafe relative path {rel!r}")
    return str(p)


class LocalDir(Location):
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def list(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(str(p.relative_to(self.root).as_posix()) for p in self.root.rglob("*")
                      if p.is_file() and not p.name.startswith(".tmp-"))

    def read(self, rel: str) -> bytes:
        return (self.root / _safe_rel(rel)).read_bytes()

    def write(self, rel: str, data: bytes, content_type: str) -> None:
        target = self.root / _safe_rel(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def exists(self, rel: str) -> bool:
        return (self.root / _safe_rel(rel)).is_file()

    def __str__(self) -> str:
        return str(self.root)


class S3Prefix(Location):
    """Objects under ``s3://bucket/prefix`` (any key names: they come from the user's bucket)."""

    def __init__(self, url: str, settings):
        from serve_app.storage import S3Storage

        bucket, _, prefix = url[len("s3://"):].partition("/")
        self.url = url
        self.prefix = prefix.strip("/")
        self.s3 = S3Storage(settings.s3_endpoint, settings.s3_access_key.get_secret_value(),
                            settings.s3_secret_key.get_secret_value(), bucket, settings.s3_secure,
                            settings.s3_region)

    def _key(self, rel: str) -> str:
        rel = _safe_rel(rel)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def list(self) -> list[str]:
        c = self.s3
        if not c._call(c.client.bucket_exists, c.bucket):
            return []
        start = f"{self.prefix}/" if self.prefix else ""
        objs = c._call(lambda: list(c.client.list_objects(c.bucket, prefix=start, recursive=True)))
        return sorted(o.object_name[len(start):] for o in objs if not o.is_dir)

    def read(self, rel: str) -> bytes:
        c = self.s3
        resp = c._call(c.client.get_object, c.bucket, self._key(rel))
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def write(self, rel: str, data: bytes, content_type: str) -> None:
        c = self.s3
        c.ensure_bucket()
        c._call(c.client.put_object, c.bucket, self._key(rel), io.BytesIO(data), len(data), content_type=content_type)

    def exists(self, rel: str) -> bool:
        from serve_app.errors import ObjectNotFoundError

        c = self.s3
        try:
            c._call(c.client.stat_object, c.bucket, self._key(rel))
            return True
        except ObjectNotFoundError:
            return False

    def __str__(self) -> str:
        return self.url


def open_location(spec: str, settings) -> Location:
    return S3Prefix(spec, settings) if spec.startswith("s3://") else LocalDir(spec)


def output_name(rel: str, fmt: str) -> str:
    return str(PurePosixPath(rel).with_suffix(FORMAT_SUFFIX[fmt]))


@dataclass
class BatchJob:
    src: str
    dst: str
    model: str
    variant: str | None = None
    fmt: str = "png"
    #: actors in the pool (default: as many as the cluster's CPUs allow at num_cpus each)
    workers: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    registry_path: str | None = None
    device: str | None = None


@dataclass
class BatchSummary:
    total: int
    skipped: int
    written: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        lines = [f"{self.written} written, {self.skipped} skipped (already done), {len(self.failures)} failed "
                 f"of {self.total} images in {self.seconds:.1f} s ({self.images_per_s:.2f} images/s)"]
        lines += [f"failed: {rel}: {reason}" for rel, reason in self.failures]
        return "\n".join(lines)


class DehazeWorker:
    """The Ray Data actor: one Dehazer, reads SRC and writes DST itself."""

    def __init__(self, job: BatchJob, settings_dump: dict[str, Any]):
        from algorithms.registry import create, load_registry
        from serve_app.model_server import configure_threads
        from serve_app.settings import Settings
        from serve_app.storage import make_weights_store

        self.job = job
        self.settings = Settings(**settings_dump)
        threads = max(1, int(job.num_cpus))
        configure_threads(threads)
        runtime = self.settings.runtime(job.device, threads)
        self.dehazer = create(job.model, job.variant, make_weights_store(self.settings), runtime=runtime,
                              registry=load_registry(job.registry_path or self.settings.registry_path))
        self.src = open_location(job.src, self.settings)
        self.dst = open_location(job.dst, self.settings)

    def one(self, rel: str) -> tuple[str, str]:
        """(status, reason) for one image: written / skipped / failed."""
        from algorithms.errors import DehazeError
        from serve_app import imaging

        out_rel = output_name(rel, self.job.fmt)
        try:
            if self.dst.exists(out_rel):
                return "skipped", ""
            s = self.settings
            decoded = imaging.decode_image(self.src.read(rel), s.max_upload_bytes, s.max_pixels)
            out = self.dehazer(decoded.array)
            data = imaging.encode_image(out, self.job.fmt, s.jpeg_quality)
            self.dst.write(out_rel, data, imaging.MEDIA_TYPES[self.job.fmt])
            return "written", ""
        except DehazeError as exc:
            return "failed", exc.message
        except (OSError, ValueError) as exc:
            return "failed", f"{type(exc).__name__}: {exc}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        results = [self.one(str(rel)) for rel in batch["src"]]
        return {"src": list(batch["src"]), "status": [r[0] for r in results], "reason": [r[1] for r in results]}


def pending_inputs(src: Location, dst: Location, fmt: str) -> tuple[list[str], int]:
    """(inputs still to do, number already done)."""
    images = [rel for rel in src.list() if PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES]
    done = set(dst.list())
    todo = [rel for rel in images if output_name(rel, fmt) not in done]
    return todo, len(images) - len(todo)


def run_batch(job: BatchJob, settings, progress: bool = True) -> BatchSummary:
    """Run the job on the current Ray cluster (``ray.init`` must have been called)."""
    import ray
    from tqdm import tqdm

    from algorithms.errors import WeightsUnavailableError
    from algorithms.registry import load_registry, variant_unavailable_reason
    from serve_app.storage import make_weights_store

    # unknown model/variant or missing weights fail here, before any actor starts
    entry = load_registry(job.registry_path or settings.registry_path).get(job.model)
    reason = variant_unavailable_reason(entry, entry.variant(job.variant), make_weights_store(settings))
    if reason:
        raise WeightsUnavailableError(f"{entry.name}: {reason}")
    src, dst = open_location(job.src, settings), open_location(job.dst, settings)
    todo, done_before = pending_inputs(src, dst, job.fmt)
    summary = BatchSummary(total=len(todo) + done_before, skipped=done_before, written=0)
    if not todo:
        return summary
    workers = job.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(job.num_cpus, 1e-3)))
    workers = min(workers, len(todo))
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"src": rel} for rel in todo], override_num_blocks=min(len(todo), 4 * workers))
    ds = ds.map_batches(DehazeWorker, fn_constructor_kwargs={"job": job, "settings_dump": _dump(settings)},
                        batch_size=1, concurrency=workers, num_cpus=job.num_cpus, num_gpus=job.num_gpus or None)
    with tqdm(total=len(todo), desc=f"{job.model} batch", unit="img", disable=not progress) as bar:
        for row in ds.iter_rows():
            status = row["status"]
            if status == "written":
                summary.written += 1
            elif status == "skipped":
                summary.skipped += 1
            else:
                summary.failures.append((row["src"], row["reason"]))
            bar.update(1)
    summary.seconds = time.perf_counter() - t0
    summary.failures.sort()
    return summary


def _dump(settings) -> dict[str, Any]:
    """Settings as plain values (secrets included) for the actors' own Settings()."""
    out = settings.model_dump()
    for k, v in out.items():
        if hasattr(v, "get_secret_value"):
            out[k] = v.get_secret_value()
        elif isinstance(v, Path):
            out[k] = str(v)
    return out

