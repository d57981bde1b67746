"""The training log: ``train_log.csv`` and ``train_log.jsonl`` (same records) and a plot.

Records are dicts with ``kind`` ("train" or "val") and ``step``. Train records average the
losses over the logging interval; val records hold whole-image PSNR/SSIM. The JSON lines carry
every field (including each auxiliary loss term as ``aux/<name>``); the CSV has fixed columns.
A resumed run first drops the records past its checkpoint's step, then appends.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("kind", "step", "epoch", "lr", "loss", "l1", "aux", "grad_norm", "sec_per_step",
               "val_psnr", "val_ssim", "val_images", "time")


class RunLog:
    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.csv_path = run_dir / "train_log.csv"
        self.jsonl_path = run_dir / "train_log.jsonl"
        self.plot_path = run_dir / "train_plot.png"
        self.records: list[dict[str, Any]] = []
        if resume_step is not None and self.jsonl_path.exists():
            for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("step", 0) <= resume_step:
                        self.records.append(rec)
        self._rewrite()

    def _rewrite(self) -> None:
        with open(self.csv_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for rec in self.records:
                writer.writerow(_csv_row(rec))
        with open(self.jsonl_path, "w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec) + "\n")

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, CSV_COLUMNS, extrasaction="ignore").writerow(_csv_row(record))
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def plot(self) -> Path | None:
        """Loss (log scale) and validation PSNR against the step, to train_plot.png."""
        train = [r for r in self.records if r["kind"] == "train"]
        val = [r for r in self.records if r["kind"] == "val"]
        if not train and not val:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        if train:
            steps = [r["step"] for r in train]
            ax1.plot(steps, [r["loss"] for r in train], lw=0.8, label="loss")
            ax1.plot(steps, [r["l1"] for r in train], lw=0.8, alpha=0.7, label="L1")
            if any(r.get("aux") for r in train):
                ax1.plot(steps, [r.get("aux", 0.0) for r in train], lw=0.8, alpha=0.7, label="auxiliary")
            if all(r["loss"] > 0 for r in train):
                ax1.set_yscale("log")
            ax1.legend()
        ax1.set_xlabel("step")
        ax1.set_title("training loss")
        ax1.grid(alpha=0.3)
        if val:
            ax2.plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", label="PSNR (dB)")
            ax2.set_ylabel("PSNR (dB)")
            ax3 = ax2.twinx()
            ax3.plot([r["step"] for r in val], [r["val_ssim"] for r in val], "s--", color="tab:orange", label="SSIM")
            ax3.set_ylabel("SSIM")
        ax2.set_xlabel("step")
        ax2.set_title("validation (whole images)")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)
        return self.plot_path


def _csv_row(rec: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for k in CSV_COLUMNS:
        v = rec.get(k, "")
        if isinstance(v, float) and math.isfinite(v):
            v = f"{v:.6g}"
        row[k] = v
    return row
