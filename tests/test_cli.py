"""The `dehaze` command line: models, run (in-process, no Ray)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_app.cli import main


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "DCP" in out and "default" in out and "available" in out


def test_run_on_files_and_folders(tmp_path, shared_dir):
    hazy = shared_dir / "data" / "sots-indoor" / "hazy"
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ["1400_1.png", "1401_5.png"]:
        (folder / name).write_bytes((hazy / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["run", str(folder), str(hazy / "1402_1.png"), "--model", "DCP", "-o", str(out), "--quiet"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["1400_1.png", "1401_5.png", "1402_1.png"]
    a = np.asarray(Image.open(out / "1400_1.png"))
    assert a.shape == (460, 620, 3)


def test_run_reports_bad_files_and_unknown_models(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["run", str(bad), "--model", "DCP", "-o", str(tmp_path / "o"), "--quiet"]) == 1
    assert main(["run", str(bad), "--model", "NoSuchModel", "-o", str(tmp_path / "o")]) == 2


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "dehaze"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "serve" in r.stdout and "run" in r.stdout


def test_run_param_overrides_the_registry_parameters(tmp_path, shared_dir, capsys):
    """--param KEY=VALUE (YAML value) overrides the variant's registry parameters for this run;
    the algorithm validates them, and networks without parameters refuse them."""
    image = shared_dir / "data" / "sots-indoor" / "hazy" / "1400_1.png"
    assert main(["run", str(image), "--model", "DCP", "-o", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["run", str(image), "--model", "DCP", "-o", str(tmp_path / "b"), "--quiet",
                 "--param", "omega=0.5", "--param", "patch=7"]) == 0
    default, weaker = (np.asarray(Image.open(tmp_path / d / "1400_1.png")).astype(int) for d in "ab")
    hazy = np.asarray(Image.open(image).convert("RGB")).astype(int)
    # omega 0.5 removes half the haze: the output stays closer to the input than the default's
    assert np.abs(weaker - hazy).mean() < 0.8 * np.abs(default - hazy).mean()
    capsys.readouterr()
    assert main(["run", str(image), "--model", "DCP", "-o", str(tmp_path / "c"), "--param", "omega=3"]) == 2
    assert "params.omega" in capsys.readouterr().err
    assert main(["run", str(image), "--model", "DCP", "-o", str(tmp_path / "c"), "--param", "no_such=1"]) == 2
    assert "no_such" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(image), "--model", "DCP", "-o", str(tmp_path / "c"), "--param", "omega"])
