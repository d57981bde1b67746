"""algorithms/training: dataset pairing, a CPU smoke run of gUNet-T on SOTS-indoor (loss goes
down, checkpoints reload with identical outputs and serve through the registry, an interrupted
and resumed run replays the uninterrupted one), and `dehaze train` end to end fine-tuning the
released LKD-Net-T checkpoint."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from algorithms.training import DatasetError, TrainConfig, pair_folder, split_by_scene, train

STEPS, STOP = 20, 10


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write(path: Path, value: int = 128, size: tuple[int, int] = (20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


# --- pairing ---------------------------------------------------------------------------------


def test_pairing_rules_reside_ohaze_and_same_name(tmp_path):
    reside = tmp_path / "reside"
    for name in ["1400_1.png", "1400_5.png", "1401_1_0.9.jpg", "77.png", "orphan-x.png"]:
        _write(reside / "hazy" / name)
    for name in ["1400.png", "1401.png", "77.png"]:
        _write(reside / "gt" / name)
    pairs = {p.hazy.name: p.clear.name for p in pair_folder(reside)}
    assert pairs == {"1400_1.png": "1400.png", "1400_5.png": "1400.png", "1401_1_0.9.jpg": "1401.png", "77.png": "77.png"}

    ohaze = tmp_path / "ohaze"  # O-HAZE / NH-HAZE: GT/ in capitals, <n>_outdoor_hazy -> <n>_outdoor_GT
    for name in ["27_outdoor_hazy.jpg", "35_outdoor_hazy.jpg"]:
        _write(ohaze / "hazy" / name)
    _write(ohaze / "hazy" / "01_hazy.png")
    for name in ["27_outdoor_GT.jpg", "35_outdoor_GT.jpg", "01_GT.png"]:
        _write(ohaze / "GT" / name)
    pairs = {p.hazy.name: p.clear.name for p in pair_folder(ohaze)}
    assert pairs == {"27_outdoor_hazy.jpg": "27_outdoor_GT.jpg", "35_outdoor_hazy.jpg": "35_outdoor_GT.jpg",
                     "01_hazy.png": "01_GT.png"}

    same = tmp_path / "same"  # clear/ folder, same stem, other extension
    _write(same / "hazy" / "a.png")
    _write(same / "clear" / "a.jpg")
    assert [(p.hazy.name, p.clear.name) for p in pair_folder(same)] == [("a.png", "a.jpg")]


def test_pairing_fails_with_a_clear_message(tmp_path):
    _write(tmp_path / "none" / "hazy" / "x.png")
    _write(tmp_path / "none" / "gt" / "y.png")
    with pytest.raises(DatasetError, match=r"no hazy/clear pairs.*1 images in hazy/.*pairing rules"):
        pair_folder(tmp_path / "none")
    _write(tmp_path / "flat" / "x.png")
    with pytest.raises(DatasetError, match="expected a hazy folder"):
        pair_folder(tmp_path / "flat")


def test_sots_pairs_and_scene_split(shared_dir):
    pairs = pair_folder(shared_dir / "data" / "sots-indoor")
    assert len(pairs) == 100 and all(p.clear.stem == p.hazy.stem.split("_")[0] for p in pairs)
    tr, va = split_by_scene(pairs, 0.1, seed=0)
    assert len(va) == 10 and len(tr) == 90 and not {p.clear for p in tr} & {p.clear for p in va}


# --- gUNet-T smoke run --------------------------------------------------------------------------


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model="gUNet", variant="reside-in-t", data=str(data), out=str(out), init="scratch", steps=STEPS,
                batch_size=2, crop=64, lr=1e-3, warmup=2, val_every=0, val_max_images=1, log_every=1,
                save_every=STEPS, workers=0, progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def runs(shared_dir, tmp_path_factory):
    data = shared_dir / "data" / "sots-indoor"
    root = tmp_path_factory.mktemp("train")
    full = train(_cfg(data, root / "full"))
    first = train(_cfg(data, root / "resumed", stop_at=STOP))
    logged_before = (root / "resumed" / "train_log.csv").read_text()
    second = train(_cfg(data, root / "resumed", resume=True))
    return {"full": full, "first": first, "second": second, "logged_before": logged_before, "data": data}


def _train_records(result):
    return [r for r in result.records if r["kind"] == "train"]


def test_loss_decreases(runs):
    losses = [r["loss"] for r in _train_records(runs["full"])]
    assert len(losses) == STEPS
    first, last = np.mean(losses[:6]), np.mean(losses[-6:])
    assert last < 0.8 * first, (first, last, losses)


def test_outputs_log_plot_and_checkpoint_files(runs):
    r = runs["full"]
    d = r.run_dir
    assert r.finished and r.step == STEPS and r.init == "scratch"
    for name in ["model.safetensors", "best.safetensors", "config.json", "train_log.csv", "train_log.jsonl",
                 "train_plot.png", f"checkpoints/step_{STEPS:08d}.safetensors", f"checkpoints/step_{STEPS:08d}.state.pt"]:
        assert (d / name).is_file(), name
    assert cv2.imread(str(d / "train_plot.png")) is not None
    rows = list(csv.DictReader(open(d / "train_log.csv")))
    assert [int(x["step"]) for x in rows if x["kind"] == "train"] == list(range(1, STEPS + 1))
    val = [x for x in rows if x["kind"] == "val"]
    assert len(val) == 1 and float(val[0]["val_psnr"]) > 10
    resolved = json.loads((d / "config.json").read_text())["resolved"]
    assert resolved["arch"] == "gunet-t" and resolved["crop"] == 64


def test_checkpoint_reloads_identically_and_serves(runs, tmp_path):
    import algorithms
    from algorithms.common.checkpoint import load_into
    from algorithms.registry import create, parse_registry
    from algorithms.training.checkpoints import load_weights
    from algorithms.training.data import read_rgb

    r = runs["full"]
    fresh = algorithms.build_network("gunet-t").eval()
    load_into(fresh, load_weights(r.run_dir / "model.safetensors"))
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.equal(fresh(x), r.network(x))
    # the service reads it: a registry variant whose path is the .safetensors under a weights root
    weights = tmp_path / "weights"
    (weights / "gUNet" / "mine").mkdir(parents=True)
    shutil.copy(r.run_dir / "model.safetensors", weights / "gUNet" / "mine" / "gunet_t.safetensors")
    reg = parse_registry("""
- name: gUNet
  type: cnn
  importPath: algorithms.gunet
  children:
    - {name: mine-t, type: indoor, path: gUNet/mine/gunet_t.safetensors, arch: gunet-t}
""")
    dehazer = create("gUNet", "mine-t", weights_root=weights, device="cpu", registry=reg)
    val = next(v for v in r.records if v["kind"] == "val")
    from algorithms.training.data import split_by_scene as split

    pair = split(pair_folder(runs["data"]), 0.1, 0)[1][0]
    from algorithms.common.quality import psnr

    out = dehazer(read_rgb(pair.hazy))
    assert psnr(out, read_rgb(pair.clear)) == pytest.approx(val["val_psnr"], abs=1e-6)


def test_resume_continues_the_run(runs):
    from algorithms.training.checkpoints import list_checkpoints, load_state, load_weights

    first, second, full = runs["first"], runs["second"], runs["full"]
    assert (first.step, first.finished, first.weights) == (STOP, False, None)
    assert [s for s, _, _ in list_checkpoints(first.run_dir)] == [STOP, STEPS]
    assert second.finished and second.step == STEPS
    # the log continues: every step once, the pre-resume rows kept as they were
    rows = list(csv.DictReader(open(second.run_dir / "train_log.csv")))
    assert [int(x["step"]) for x in rows if x["kind"] == "train"] == list(range(1, STEPS + 1))
    assert (second.run_dir / "train_log.csv").read_text().startswith(runs["logged_before"])
    # schedule and optimizer state continued: same learning rates and losses as the uninterrupted run
    a, b = _train_records(full), _train_records(second)
    assert [r["lr"] for r in a] == pytest.approx([r["lr"] for r in b], rel=1e-9)
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4, abs=1e-6)
    state = load_state(second.run_dir / "checkpoints" / f"step_{STEPS:08d}.state.pt")
    assert state["step"] == STEPS and state["scheduler"]["last_epoch"] == STEPS
    assert all(int(s["step"]) == STEPS for s in state["optimizer"]["state"].values())
    wa = load_weights(full.run_dir / "model.safetensors")
    wb = load_weights(second.run_dir / "model.safetensors")
    assert max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa) < 1e-5


def test_existing_run_needs_resume(runs):
    from algorithms.training import TrainingError

    with pytest.raises(TrainingError, match="--resume"):
        train(_cfg(runs["data"], runs["full"].run_dir))


# --- the CLI: fine-tune a released checkpoint -----------------------------------------------------

LKD_REGISTRY = """
- name: LKD-Net
  type: cnn
  importPath: algorithms.lkdnet
  children:
    - {name: its-t, type: indoor, path: %s, arch: lkdnet-t}
"""


def test_cli_finetunes_released_lkdnet(shared_dir, tmp_path, capsys):
    from serve_app.cli import main

    released = "lkdnet/ITS/LKD-t/LKD-t.pth"
    assert (shared_dir / "weights" / released).is_file(), f"../shared/weights lacks {released}"
    reg = tmp_path / "models.yaml"
    reg.write_text(LKD_REGISTRY % released)
    out = tmp_path / "run"
    args = ["train", "--model", "LKD-Net", "--data", str(shared_dir / "data" / "sots-indoor"), "--steps", "3",
            "--batch-size", "2", "--crop", "64", "--lr", "1e-5", "--warmup", "0", "--val-every", "0",
            "--val-max-images", "1", "--log-every", "1", "--workers", "0", "--threads", "1", "--quiet",
            "--out", str(out), "--registry", str(reg), "--weights-root", str(shared_dir / "weights")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "step 3" in printed and "model.safetensors" in printed
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["init"] == f"released:{released}"
    val = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in val if r["kind"] == "val"]
    # validated before the first step (released weights) and at the end; the network's [-1, 1]
    # range is applied, so the released model scores like the paper's, and a small-lr fine-tune keeps it
    assert [r["step"] for r in val] == [0, 3]
    assert val[0]["val_psnr"] > 30 and val[1]["val_psnr"] > 30
    assert (out / "train_plot.png").is_file() and (out / "model.safetensors").is_file()

    assert main(args) == 2  # the run folder holds checkpoints: needs --resume
    assert "--resume" in capsys.readouterr().err


def test_cli_reports_unpairable_data(tmp_path, capsys):
    from serve_app.cli import main

    _write(tmp_path / "d" / "hazy" / "x.png")
    _write(tmp_path / "d" / "gt" / "y.png")
    assert main(["train", "--model", "gUNet", "--data", str(tmp_path / "d"), "--init", "scratch",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "no hazy/clear pairs" in capsys.readouterr().err


# --- the auxiliary-loss hook (the contract codebook networks implement) ------------------------


class _HookedNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.calls = {"forward": 0, "training_forward": 0}

    def forward(self, x):
        self.calls["forward"] += 1
        return x + self.conv(x)

    def training_forward(self, x):
        self.calls["training_forward"] += 1
        return {"image": x + self.conv(x), "q": self.conv.weight.pow(2).sum()}

    def training_losses(self, outputs, target):
        return {"commitment": 0.5 * outputs["q"]}


def test_network_hooks_training_forward_and_losses(shared_dir, tmp_path, monkeypatch):
    import types

    from algorithms.common.network import IOFacts, NetworkVariant
    from algorithms.registry import parse_registry

    module = types.ModuleType("toy_hooked_net")
    module.NETWORKS = {"toy": NetworkVariant(build=_HookedNet, io=IOFacts(input_range=(-1.0, 1.0), output_range=(-1.0, 1.0)))}
    monkeypatch.setitem(__import__("sys").modules, "toy_hooked_net", module)
    reg = parse_registry("- {name: Toy, type: cnn, importPath: toy_hooked_net, arch: toy}")
    result = train(TrainConfig(model="Toy", data=str(shared_dir / "data" / "sots-indoor"), out=str(tmp_path / "run"),
                               steps=3, batch_size=2, crop=32, warmup=0, val_every=0, val_max_images=1,
                               log_every=1, workers=0, progress=False), registry=reg)
    assert result.init == "scratch"  # no path in the registry: random init
    assert result.network.calls == {"forward": 1, "training_forward": 3}  # validation uses forward
    rows = [r for r in result.records if r["kind"] == "train"]
    assert all(r["aux/commitment"] > 0 and r["loss"] == pytest.approx(r["l1"] + r["aux/commitment"]) for r in rows)
    assert "aux" in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[0]


def test_init_part_loads_a_pretrained_subset_and_refuses_misfits(shared_dir, tmp_path, monkeypatch):
    """--init-part (two-stage training: a prior pre-trained on its own, then the whole network):
    the part's tensors land in the network before step 1; unknown names or other shapes fail."""
    import types

    from safetensors.torch import save_file

    from algorithms.common.network import NetworkVariant
    from algorithms.registry import parse_registry
    from algorithms.training import TrainingError

    module = types.ModuleType("toy_part_net")
    module.NETWORKS = {"toy": NetworkVariant(build=_HookedNet)}
    monkeypatch.setitem(__import__("sys").modules, "toy_part_net", module)
    reg = parse_registry("- {name: Toy, type: cnn, importPath: toy_part_net, arch: toy}")
    part = tmp_path / "prior.safetensors"
    save_file({"conv.bias": torch.full((3,), 0.25)}, str(part))

    def run(out: str, *parts: Path):
        return train(TrainConfig(model="Toy", data=str(shared_dir / "data" / "sots-indoor"), out=str(tmp_path / out),
                                 steps=1, batch_size=1, crop=32, lr=0.0, warmup=0, val_every=0, workers=0,
                                 init_parts=tuple(str(p) for p in parts), progress=False), registry=reg)

    result = run("ok", part)
    assert result.init == f"scratch + part:{part} (1 tensors)"
    torch.testing.assert_close(result.network.conv.bias.detach().cpu(), torch.full((3,), 0.25))  # lr 0: unchanged

    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.bias": torch.zeros(4), "head.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(TrainingError, match=r"does not fit the network: 1 unknown tensors.*1 with other shapes"):
        run("bad", wrong)
    with pytest.raises(TrainingError, match="no such file"):
        run("missing", tmp_path / "nope.safetensors")
