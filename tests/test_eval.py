"""`dehaze eval`: in-process on shared SOTS images (DCP and AOD-Net with its real weights), and
through a deployed service (--url); checks the report files and their numbers."""
from __future__ import annotations

import csv
import json
import shutil

import httpx
import numpy as np
import pytest

from algorithms.common import quality
from serve_app.cli import main
from serve_app.evaluation import align_reference, load_rgb, pair_images, parse_models

IMAGES = ["1400_1.png", "1400_5.png", "1401_5.png"]


@pytest.fixture(scope="module")
def sots_subset(shared_dir, tmp_path_factory):
    """Three SOTS-indoor hazy images and their ground truths, in the SOTS layout (hazy/, gt/)."""
    root = tmp_path_factory.mktemp("sots3")
    src = shared_dir / "data" / "sots-indoor"
    (root / "hazy").mkdir()
    (root / "gt").mkdir()
    for name in IMAGES:
        shutil.copy(src / "hazy" / name, root / "hazy" / name)
        scene = name.split("_")[0]
        if not (root / "gt" / f"{scene}.png").exists():
            shutil.copy(src / "gt" / f"{scene}.png", root / "gt" / f"{scene}.png")
    return root


@pytest.fixture(scope="module")
def aod_weights(shared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    (root / "AODNet").mkdir()
    shutil.copy(shared_dir / "weights" / "aod-net" / "dehazer.pth", root / "AODNet" / "dehazer.pth")
    return root


def test_pairing_rules_and_model_specs(tmp_path, sots_subset):
    samples = pair_images(sots_subset)
    assert [(s.name, s.gt.name) for s in samples] == [("1400_1", "1400.png"), ("1400_5", "1400.png"),
                                                      ("1401_5", "1401.png")]
    # same-name pairs with --gt (suffixes may differ), and images without a ground truth
    (tmp_path / "h").mkdir()
    (tmp_path / "g").mkdir()
    for name in ["a.png", "b.png"]:
        shutil.copy(sots_subset / "hazy" / "1400_1.png", tmp_path / "h" / name)
    shutil.copy(sots_subset / "gt" / "1400.png", tmp_path / "g" / "a.png")
    assert [(s.name, s.gt and s.gt.name) for s in pair_images(tmp_path / "h", tmp_path / "g")] == [
        ("a", "a.png"), ("b", None)]
    big = np.zeros((480, 640, 3), np.uint8)
    assert align_reference(big, (460, 620, 3)).shape == (460, 620, 3)
    assert align_reference(big, (461, 620, 3)) is None
    assert [s.label for s in parse_models("DCP, AODNet:default")] == ["DCP", "AODNet:default"]


def test_eval_in_process_dcp_and_aodnet(sots_subset, aod_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEHAZE_WEIGHTS_ROOT", str(aod_weights))
    out = tmp_path / "report"
    rc = main(["eval", "--models", "DCP,AODNet:default", "--data", str(sots_subset), "-o", str(out),
               "--threads", "1", "--device", "cpu", "--quiet"])
    assert rc == 0
    assert "| DCP | default | 3 |" in capsys.readouterr().out
    for name in ["results.json", "summary.csv", "per_image.csv", "report.md", "report.html", "chart.png"]:
        assert (out / name).stat().st_size > 100, name
    result = json.loads((out / "results.json").read_text())
    summary = {s["model"]: s for s in result["summary"]}
    assert list(summary) == ["hazy input", "DCP", "AODNet:default"]
    assert result["meta"]["images"] == 3 and result["meta"]["with_ground_truth"] == 3
    rows = {(r["image"], r["model"]): r for r in result["rows"]}
    assert len(rows) == 9
    # the input's numbers are recomputed here with the shared conventions
    hazy = load_rgb(sots_subset / "hazy" / "1400_5.png")
    gt = load_rgb(sots_subset / "gt" / "1400.png")
    assert rows[("1400_5", "hazy input")]["psnr"] == pytest.approx(quality.psnr(hazy, gt), abs=1e-9)
    assert rows[("1400_5", "hazy input")]["ssim"] == pytest.approx(quality.ssim(hazy, gt), abs=1e-9)
    # both models clear the haze: better PSNR/SSIM than the input, lower haze score
    for model in ["DCP", "AODNet:default"]:
        s = summary[model]
        assert s["images"] == 3 and s["with_gt"] == 3 and s["failed"] == 0
        assert s["psnr"] > summary["hazy input"]["psnr"] + 3, s
        assert s["ssim"] > summary["hazy input"]["ssim"], s
        assert s["haze_score"] < summary["hazy input"]["haze_score"], s
        assert 15 < s["psnr"] < 30 and s["time_ms"] > 0
    assert summary["AODNet:default"]["variant"] == "default"
    # the means are the means of the per-image rows, in all three table formats
    per_image = list(csv.DictReader((out / "per_image.csv").open()))
    dcp = [float(r["psnr"]) for r in per_image if r["model"] == "DCP"]
    assert len(dcp) == 3 and np.mean(dcp) == pytest.approx(summary["DCP"]["psnr"], rel=1e-9)
    summary_csv = {r["model"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert float(summary_csv["AODNet:default"]["ssim"]) == pytest.approx(summary["AODNet:default"]["ssim"])
    md = (out / "report.md").read_text()
    assert f"| DCP | default | 3 | {summary['DCP']['psnr']:.2f} |" in md and "| 1401_5 | AODNet:default |" in md
    # the HTML report: chart and a grid of hazy | each model | ground truth thumbnails, all present
    page = (out / "report.html").read_text()
    assert '<img src="chart.png"' in page
    for image in ["1400_1", "1400_5", "1401_5"]:
        for suffix in ["input", "DCP", "AODNet-default", "gt"]:
            thumb = f"thumbs/{image}__{suffix}.jpg"
            assert thumb in page and (out / thumb).stat().st_size > 1000, thumb


def test_eval_reports_bad_arguments(tmp_path, sots_subset, capsys):
    assert main(["eval", "--models", "NoSuchModel", "--data", str(sots_subset), "-o", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["eval", "--models", "DCP", "--data", str(tmp_path / "absent"), "-o", str(tmp_path / "o")]) == 2


@pytest.fixture(scope="module")
def eval_service(ray_serve, tmp_path_factory):
    from ray import serve

    from tests.conftest import deploy

    root = tmp_path_factory.mktemp("eval-app")
    settings = {"storage_backend": "local", "storage_dir": str(root / "storage"),
                "weights_root": str(root / "weights")}
    deploy({"settings": settings, "profile": "cpu", "models": ["DCP", "CAP"]}, "eval", "/")
    yield ray_serve.url
    serve.delete("eval")


def test_eval_through_the_service_matches_in_process(eval_service, sots_subset, tmp_path):
    assert httpx.get(eval_service + "/healthz", timeout=30).status_code == 200
    via_http, local = tmp_path / "http", tmp_path / "local"
    argv = ["eval", "--models", "DCP,CAP", "--data", str(sots_subset), "--limit", "2", "--quiet"]
    assert main([*argv, "-o", str(via_http), "--url", eval_service]) == 0
    assert main([*argv, "-o", str(local), "--threads", "1", "--device", "cpu"]) == 0
    remote = json.loads((via_http / "results.json").read_text())
    here = json.loads((local / "results.json").read_text())
    assert remote["meta"]["runner"] == eval_service and here["meta"]["runner"] == "in-process"
    assert len(remote["rows"]) == 6  # 2 images x (input, DCP, CAP)
    for a, b in zip(remote["rows"], here["rows"]):
        assert (a["image"], a["model"]) == (b["image"], b["model"])
        # PNG is lossless: the service's output is the in-process output
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-6) and a["ssim"] == pytest.approx(b["ssim"], abs=1e-6)
    assert (via_http / "report.html").exists() and (via_http / "thumbs" / "1400_1__CAP.jpg").exists()
    # a model the service does not deploy is refused before any image is sent
    assert main(["eval", "--models", "BCCR", "--data", str(sots_subset), "-o", str(tmp_path / "x"),
                 "--url", eval_service, "--quiet"]) == 2
