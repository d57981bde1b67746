"""``dehaze eval``: score dehazing models on a folder of images and write a report with pictures.

Metrics (conventions of algorithms/common/quality.py, those of the papers' public evaluation code):

- PSNR on RGB in [0, 1] over all pixels and channels (peak 1), and SSIM (11x11 Gaussian window,
  sigma 1.5, K1 0.01, K2 0.03, per RGB channel on [0, 1], averaged; "valid" region) against the
  ground truth, where one exists;
- the no-reference haze score (mean 15x15 dark channel in [0, 1]; lower = less haze) for every
  output, the hazy input and the ground truth. It needs no parameters or downloads.

Pairing of a hazy image with its ground truth (first rule that matches wins):

1. ground-truth folder: ``--gt DIR``; without it, when ``--data`` has sub-folders ``hazy/`` and
   ``gt/`` (or ``clear/``, ``GT/``), those (the SOTS / RESIDE layout); else no ground truth;
2. the same file stem in the ground-truth folder (``a.png`` <-> ``a.jpg`` counts: suffixes may differ);
3. the stem up to the first ``_`` (SOTS: ``hazy/1400_5.png`` <-> ``gt/1400.png``; SOTS outdoor
   ``0001_0.8_0.2.jpg`` <-> ``0001.png``);
4. otherwise the image has no ground truth: it gets only the haze score.

A ground truth larger than its hazy image by the same margin on opposite sides (SOTS-indoor's
original 640x480 GT vs 620x460 hazy) is centre-cropped to the hazy size; any other size mismatch
is reported on that row and no full-reference metric is computed for it.

Models run in-process (``algorithms.registry.create``, no Ray) or through a running service
(``--url``: ``POST {url}/v1/dehaze/{model}?variant=...&format=png``, optional bearer token).

Outputs (in ``-o OUT``): ``results.json`` (settings, summary, per-image rows), ``summary.csv``,
``per_image.csv``, ``report.md``, ``report.html`` (bar chart + side-by-side thumbnails: hazy |
each model | ground truth), ``chart.png`` and ``thumbs/``.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from algorithms.common import quality

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
GT_DIR_NAMES = ("gt", "GT", "clear", "Clear")
HAZY_DIR_NAMES = ("hazy", "Hazy", "haze")
THUMB_SIDE = 176
INPUT_LABEL = "hazy input"


class EvalError(Exception):
    """A problem with the arguments or a model that stops the whole evaluation."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    variant: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{self.variant}" if self.variant else self.name


@dataclass
class Sample:
    name: str
    hazy: Path
    gt: Path | None


@dataclass
class Row:
    image: str
    model: str
    variant: str
    psnr: float | None = None
    ssim: float | None = None
    haze_score: float | None = None
    time_ms: float | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row]
    summary: list[dict[str, Any]]
    samples: list[Sample]
    models: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    failures: int = 0


# ---- inputs ---------------------------------------------------------------------------------

def parse_models(text: str) -> list[ModelSpec]:
    """``"DCP,AODNet:default"`` -> specs (``name[:variant]``, comma-separated)."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, variant = part.partition(":")
        if not name:
            raise EvalError(f"--models: empty model name in {text!r}")
        specs.append(ModelSpec(name.strip(), variant.strip() or None))
    if not specs:
        raise EvalError("--models: name at least one model, e.g. --models DCP,CAP")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise EvalError(f"--models: repeated entries in {text!r}")
    return specs


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pair_images(data: Path, gt: Path | None = None, limit: int | None = None) -> list[Sample]:
    """Hazy images of ``data`` paired with ground truths (rules in the module docstring)."""
    data = Path(data)
    if not data.is_dir():
        raise EvalError(f"--data: {data} is not a directory")
    hazy_dir = data
    if gt is None:
        sub_gt = next((data / n for n in GT_DIR_NAMES if (data / n).is_dir()), None)
        sub_hazy = next((data / n for n in HAZY_DIR_NAMES if (data / n).is_dir()), None)
        if sub_gt is not None and sub_hazy is not None:
            hazy_dir, gt = sub_hazy, sub_gt
    elif not Path(gt).is_dir():
        raise EvalError(f"--gt: {gt} is not a directory")
    hazy_files = _images(hazy_dir)
    if limit:
        hazy_files = hazy_files[:limit]
    if not hazy_files:
        raise EvalError(f"no images in {hazy_dir} (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    by_stem: dict[str, Path] = {}
    if gt is not None:
        for p in _images(Path(gt)):
            by_stem.setdefault(p.stem, p)
    samples = []
    for h in hazy_files:
        match = by_stem.get(h.stem) or by_stem.get(h.stem.split("_", 1)[0])
        samples.append(Sample(h.stem, h, match))
    return samples


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


def align_reference(ref: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The ground truth at the hazy image's size (centred crop of equal margins), or None."""
    if ref.shape == tuple(shape):
        return ref
    dh, dw = ref.shape[0] - shape[0], ref.shape[1] - shape[1]
    if dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0:
        return ref[dh // 2: dh // 2 + shape[0], dw // 2: dw // 2 + shape[1]]
    return None


# ---- runners --------------------------------------------------------------------------------

class InProcessRunner:
    """Dehazers built in this process by the registry (no Ray, no HTTP)."""

    def __init__(self, device: str | None = None, threads: int | None = None, registry_path: str | None = None):
        from algorithms.registry import load_registry
        from serve_app.settings import Settings
        from serve_app.storage import make_weights_store

        settings = Settings()  # read now: DEHAZE_* as set at call time
        self.registry = load_registry(registry_path or settings.registry_path)
        self.weights = make_weights_store(settings)
        self.runtime = settings.runtime(device, threads)
        self.where = "in-process"

    def prepare(self, spec: ModelSpec) -> tuple[str, Callable[[np.ndarray, bytes], tuple[np.ndarray, float]]]:
        from algorithms.errors import DehazeError
        from algorithms.registry import create

        try:
            dehazer = create(spec.name, spec.variant, self.weights, runtime=self.runtime, registry=self.registry)
        except DehazeError as exc:
            raise EvalError(f"{spec.label}: {exc.message}") from exc

        def run(image: np.ndarray, _data: bytes) -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            out = dehazer(image)
            return out, (time.perf_counter() - t0) * 1e3

        return dehazer.variant, run


class ServiceRunner:
    """A running Dehaze Serve: POST /v1/dehaze/{model} with the image bytes, PNG back."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.where = url.rstrip("/")

    @staticmethod
    def _error(resp) -> str:
        try:
            err = resp.json()["error"]
            return f"{err['code']}: {err['message']} (HTTP {resp.status_code})"
        except Exception:  # noqa: BLE001 - not our JSON error body
            return f"HTTP {resp.status_code}: {resp.text[:200]}"

    def prepare(self, spec: ModelSpec):
        import httpx

        try:
            resp = self.client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise EvalError(f"cannot reach {self.where}: {exc}") from exc
        if resp.status_code != 200:
            raise EvalError(f"GET {self.where}/v1/models: {self._error(resp)}")
        models = {m["name"].lower(): m for m in resp.json()["models"]}
        entry = models.get(spec.name.lower())
        if entry is None:
            raise EvalError(f"{spec.label}: the service at {self.where} does not serve {spec.name!r}; "
                            f"it serves {sorted(m['name'] for m in models.values())}")
        variant = spec.variant or entry["default_variant"]
        v = next((v for v in entry["variants"] if v["name"] == variant), None)
        if v is None:
            raise EvalError(f"{spec.label}: no variant {variant!r}; variants: {[v['name'] for v in entry['variants']]}")
        if not v["available"]:
            raise EvalError(f"{spec.label}: unavailable on the service: {v['reason']}")
        path = f"/v1/dehaze/{entry['name']}"

        def run(_image: np.ndarray, data: bytes) -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            resp = self.client.post(path, params={"variant": variant, "format": "png"}, content=data,
                                    headers={"Content-Type": "application/octet-stream"})
            elapsed = (time.perf_counter() - t0) * 1e3
            if resp.status_code != 200:
                raise RuntimeError(self._error(resp))
            out = np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"), dtype=np.uint8)
            return out, elapsed

        return variant, run


# ---- evaluation -----------------------------------------------------------------------------

def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if any(math.isinf(v) for v in vals):
        return float("inf")
    return float(np.mean(vals))


def evaluate(specs: list[ModelSpec], samples: list[Sample], runner, out_dir: Path | None = None,
             progress: bool = True) -> Report:
    from tqdm import tqdm

    prepared = [(spec, *runner.prepare(spec)) for spec in specs]
    labels = [spec.label for spec, _, _ in prepared]
    thumbs = Path(out_dir) / "thumbs" if out_dir else None
    if thumbs:
        thumbs.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    failures = 0
    bar = tqdm(total=len(samples) * len(prepared), desc="dehaze eval", unit="img", disable=not progress)
    for sample in samples:
        data = sample.hazy.read_bytes()
        hazy = load_rgb(sample.hazy)
        ref, ref_note = None, ""
        if sample.gt is not None:
            ref = align_reference(load_rgb(sample.gt), hazy.shape)
            if ref is None:
                ref_note = f"ground truth {sample.gt.name} has another size; no PSNR/SSIM"
        base = Row(sample.name, INPUT_LABEL, "", haze_score=quality.haze_score(hazy), note=ref_note)
        if ref is not None:
            base.psnr, base.ssim = quality.psnr(hazy, ref), quality.ssim(hazy, ref)
        rows.append(base)
        if thumbs:
            _thumb(hazy, thumbs / f"{sample.name}__input.jpg")
            if ref is not None:
                _thumb(ref, thumbs / f"{sample.name}__gt.jpg")
        for spec, variant, run in prepared:
            bar.set_postfix_str(f"{spec.label} {sample.name}", refresh=False)
            row = Row(sample.name, spec.label, variant, note=ref_note)
            try:
                out, row.time_ms = run(hazy, data)
                if out.shape != hazy.shape:
                    raise RuntimeError(f"output is {out.shape}, input {hazy.shape}")
                row.haze_score = quality.haze_score(out)
                if ref is not None:
                    row.psnr, row.ssim = quality.psnr(out, ref), quality.ssim(out, ref)
                if thumbs:
                    _thumb(out, thumbs / f"{sample.name}__{_slug(spec.label)}.jpg")
            except Exception as exc:  # noqa: BLE001 - one bad image does not stop the run
                failures += 1
                row.note = f"failed: {exc}"
            rows.append(row)
            bar.update(1)
    bar.close()
    summary = []
    for label in [INPUT_LABEL, *labels]:
        mine = [r for r in rows if r.model == label]
        ok = [r for r in mine if not r.note.startswith("failed")]
        summary.append({
            "model": label, "variant": mine[0].variant if mine else "", "images": len(ok),
            "with_gt": sum(r.psnr is not None for r in ok),
            "psnr": _mean([r.psnr for r in ok]), "ssim": _mean([r.ssim for r in ok]),
            "haze_score": _mean([r.haze_score for r in ok]),
            "time_ms": _mean([r.time_ms for r in ok]) if label != INPUT_LABEL else None,
            "failed": len(mine) - len(ok),
        })
    gt_scores = [quality.haze_score(load_rgb(s.gt)) for s in samples if s.gt is not None]
    meta = {
        "runner": runner.where, "models": labels, "images": len(samples),
        "with_ground_truth": sum(s.gt is not None for s in samples),
        "ground_truth_haze_score": _mean(gt_scores),
        "conventions": "PSNR: RGB in [0,1], peak 1, all pixels; SSIM: 11x11 Gaussian (sigma 1.5), K1 0.01, "
                       "K2 0.03, per RGB channel, averaged; haze score: mean 15x15 dark channel in [0,1] (lower = clearer)",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return Report(rows, summary, samples, labels, meta, failures)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label)


def _thumb(image: np.ndarray, path: Path) -> None:
    img = Image.fromarray(image)
    img.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    img.save(path, "JPEG", quality=85)


# ---- writers --------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _clean(obj):
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "results.json", "summary_csv": out_dir / "summary.csv",
        "per_image_csv": out_dir / "per_image.csv", "markdown": out_dir / "report.md",
        "html": out_dir / "report.html", "chart": out_dir / "chart.png",
    }
    rows = [asdict(r) for r in report.rows]
    samples = [{"image": s.name, "hazy": str(s.hazy), "gt": str(s.gt) if s.gt else None} for s in report.samples]
    files["json"].write_text(json.dumps(_clean({"meta": report.meta, "summary": report.summary, "rows": rows,
                                                "pairs": samples}), indent=2) + "\n")
    with files["summary_csv"].open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(report.summary[0]))
        w.writeheader()
        w.writerows(report.summary)
    with files["per_image_csv"].open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    files["markdown"].write_text(_markdown(report))
    _chart(report, files["chart"])
    files["html"].write_text(_html(report, files["chart"].name))
    return files


def _markdown(report: Report) -> str:
    m = report.meta
    lines = [
        "# Dehazing evaluation", "",
        f"{m['images']} images ({m['with_ground_truth']} with ground truth), models run {m['runner']}, {m['created']}.",
        f"Ground-truth haze score: {_fmt(m['ground_truth_haze_score'], 4)}.", "",
        f"Conventions: {m['conventions']}.", "",
        "## Summary (means)", "",
        "| model | variant | images | PSNR (dB) | SSIM | haze score | time (ms) | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.summary:
        lines.append(f"| {s['model']} | {s['variant'] or '-'} | {s['images']} | {_fmt(s['psnr'], 2)} | "
                     f"{_fmt(s['ssim'], 4)} | {_fmt(s['haze_score'], 4)} | {_fmt(s['time_ms'], 1)} | {s['failed']} |")
    lines += ["", "## Per image", "", "| image | model | PSNR (dB) | SSIM | haze score | time (ms) | note |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in report.rows:
        lines.append(f"| {r.image} | {r.model} | {_fmt(r.psnr, 2)} | {_fmt(r.ssim, 4)} | {_fmt(r.haze_score, 4)} | "
                     f"{_fmt(r.time_ms, 1)} | {r.note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s["model"] for s in report.summary]
    metrics = [("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("haze_score", "haze score ↓")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    colours = ["#9aa6b4"] + ["#2f6fd6", "#16a37f", "#d9822b", "#8e59c2", "#c2410c", "#0e7490"] * 8
    for ax, (key, title) in zip(axes, metrics):
        values = [s[key] if s[key] is not None and math.isfinite(s[key]) else 0.0 for s in report.summary]
        bars = ax.bar(range(len(labels)), values, color=colours[: len(labels)])
        ax.set_title(title, fontsize=11)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        for b, v, s in zip(bars, values, report.summary):
            if s[key] is not None:
                ax.annotate(f"{v:.2f}" if key == "psnr" else f"{v:.3f}", (b.get_x() + b.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html(report: Report, chart_name: str) -> str:
    e = html.escape
    m = report.meta
    by_key = {(r.image, r.model): r for r in report.rows}
    head = "".join(f"<th>{e(x)}</th>" for x in ["model", "variant", "images", "PSNR (dB)", "SSIM",
                                                   "haze score", "time (ms)", "failed"])
    summary = "".join(
        f"<tr><td>{e(s['model'])}</td><td>{e(s['variant'] or '-')}</td><td>{s['images']}</td>"
        f"<td>{_fmt(s['psnr'], 2)}</td><td>{_fmt(s['ssim'], 4)}</td><td>{_fmt(s['haze_score'], 4)}</td>"
        f"<td>{_fmt(s['time_ms'], 1)}</td><td>{s['failed']}</td></tr>" for s in report.summary)
    columns = [(INPUT_LABEL, "input")] + [(label, _slug(label)) for label in report.models]
    any_gt = any(s.gt for s in report.samples)
    grid_head = "".join(f"<th>{e(c[0])}</th>" for c in columns) + ("<th>ground truth</th>" if any_gt else "")
    grid = []
    for s in report.samples:
        cells = []
        for label, slug in columns:
            r = by_key.get((s.name, label))
            caption = "failed" if r is None or r.note.startswith("failed") else (
                f"{_fmt(r.psnr, 2)} dB · {_fmt(r.ssim, 3)}" if r.psnr is not None else f"haze {_fmt(r.haze_score, 3)}")
            if caption == "failed":
                cells.append(f"<td><div>failed: {e(r.note if r else '')}</div></td>")
                continue
            img = f"thumbs/{s.name}__{slug}.jpg"
            cells.append(f'<td><img src="{e(img)}" alt="{e(label)} {e(s.name)}" loading="lazy">'
                         f"<div>{e(caption)}</div></td>")
        if any_gt:
            cells.append(f'<td><img src="thumbs/{e(s.name)}__gt.jpg" alt="ground truth {e(s.name)}" loading="lazy">'
                         f"<div>{e(s.gt.name) if s.gt else 'none'}</div></td>" if s.gt else "<td>none</td>")
        grid.append(f"<tr><th class='name'>{e(s.name)}</th>{''.join(cells)}</tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dehazing evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2633; background: #f7f8fa; }}
table {{ border-collapse: collapse; background: #fff; margin: 12px 0 24px; }}
th, td {{ border: 1px solid #dde3ea; padding: 5px 9px; font-size: 13px; text-align: right; }}
th {{ background: #eef1f5; }}
td:first-child, th.name {{ text-align: left; }}
.grid td, .grid th {{ text-align: center; vertical-align: top; }}
.grid img {{ display: block; max-width: {THUMB_SIDE}px; max-height: {THUMB_SIDE}px; margin: 0 auto 4px; }}
.grid div {{ font-size: 12px; color: #5d6b7d; }}
.note {{ color: #5d6b7d; font-size: 13px; }}
</style></head><body>
<h1>Dehazing evaluation</h1>
<p class="note">{m['images']} images ({m['with_ground_truth']} with ground truth) · models run {e(str(m['runner']))} ·
{e(m['created'])} · ground-truth haze score {_fmt(m['ground_truth_haze_score'], 4)}</p>
<p class="note">{e(m['conventions'])}. Files: <a href="results.json">results.json</a>, <a href="summary.csv">summary.csv</a>,
<a href="per_image.csv">per_image.csv</a>, <a href="report.md">report.md</a>.</p>
<h2>Summary (means)</h2>
<table><tr>{head}</tr>{summary}</table>
<img src="{e(chart_name)}" alt="bar chart of PSNR, SSIM and haze score per model" style="max-width:100%">
<h2>Images</h2>
<p class="note">Captions: PSNR · SSIM against the ground truth (or the haze score without one).</p>
<table class="grid"><tr><th>image</th>{grid_head}</tr>{''.join(grid)}</table>
</body></html>
"""


def run_eval(models: str, data: str, gt: str | None = None, out: str = "out/eval", url: str | None = None,
             token: str | None = None, limit: int | None = None, device: str | None = None,
             threads: int | None = None, progress: bool = True) -> tuple[Report, dict[str, Path]]:
    """The whole ``dehaze eval``: pair, run, score, write. Raises EvalError on bad arguments."""
    specs = parse_models(models)
    samples = pair_images(Path(data), Path(gt) if gt else None, limit)
    runner = ServiceRunner(url, token) if url else InProcessRunner(device=device, threads=threads)
    out_dir = Path(out)
    report = evaluate(specs, samples, runner, out_dir, progress=progress)
    files = write_report(report, out_dir)
    return report, files
