"""`dehaze batch`: Ray Data over a folder or an S3 prefix, resumable, failures reported."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serve_app.batch import BatchJob, LocalDir, open_location, output_name, run_batch
from serve_app.settings import settings_with


def _png(seed: int, size=(40, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _fill(loc, names: list[str]) -> None:
    for i, name in enumerate(names):
        loc.write(name, _png(i), "image/png")


def test_folder_to_folder_then_resume(ray_serve, tmp_path, shared_dir):
    src, dst = tmp_path / "in", tmp_path / "out"
    _fill(LocalDir(src), ["a.png", "sub/b.png", "c.png"])
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("not an image: ignored")
    job = BatchJob(str(src), str(dst), "DCP", num_cpus=0.5, workers=2)
    first = run_batch(job, settings_with(None), progress=False)
    assert (first.total, first.written, first.skipped) == (4, 3, 0)
    assert [rel for rel, _ in first.failures] == ["sub/broken.jpg"] and first.failures[0][1]
    for rel in ["a.png", "sub/b.png", "c.png"]:
        out = np.asarray(Image.open(dst / rel))
        assert out.shape == (32, 40, 3)
    # an interrupted job is resumed: only what is missing is done again
    (dst / "c.png").unlink()
    again = run_batch(job, settings_with(None), progress=False)
    assert (again.written, again.skipped, len(again.failures)) == (1, 3 - 1 + 0, 1)
    assert not list(dst.rglob(".tmp-*"))


def test_s3_prefix_to_s3_prefix(ray_serve, s3_server):
    settings = settings_with(s3_server.settings("batch-bucket"))
    src = open_location("s3://batch-src/hazy", settings)
    _fill(src, ["x.png", "deep/y.png"])
    job = BatchJob("s3://batch-src/hazy", "s3://batch-dst/out", "CAP", fmt="jpeg", num_cpus=0.5, workers=1)
    summary = run_batch(job, settings, progress=False)
    assert (summary.written, summary.failures) == (2, [])
    dst = open_location("s3://batch-dst/out", settings)
    assert sorted(dst.list()) == ["deep/y.jpg", "x.jpg"]
    assert Image.open(io.BytesIO(dst.read("x.jpg"))).format == "JPEG"
    assert run_batch(job, settings, progress=False).skipped == 2


def test_unknown_model_and_unsafe_paths_fail_early(ray_serve, tmp_path):
    from algorithms.errors import UnknownModelError

    with pytest.raises(UnknownModelError):
        run_batch(BatchJob(str(tmp_path), str(tmp_path / "o"), "NoSuchModel"), settings_with(None), progress=False)
    with pytest.raises(ValueError):
        LocalDir(tmp_path).read("../etc/passwd")
    assert output_name("a/b.jpeg", "png") == "a/b.png"


def test_cli_batch_command(tmp_path):
    """The console script end to end, on its own local Ray cluster."""
    import subprocess
    import sys
    from pathlib import Path

    src, dst = tmp_path / "in", tmp_path / "out"
    _fill(LocalDir(src), ["one.png", "two.png"])
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dehaze = Path(sys.executable).parent / "dehaze"
    r = subprocess.run([str(dehaze), "batch", str(src), str(dst), "--model", "DCP", "--ray-cpus", "1",
                        "--num-cpus", "1", "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]  # one failure
    assert "2 written, 0 skipped (already done), 1 failed of 3 images" in r.stdout
    assert "failed: bad.png:" in r.stdout
    assert sorted(p.name for p in dst.iterdir()) == ["one.png", "two.png"]
