# syntax=docker/dockerfile:1
# Tau's serving image: tau-serve on ONNX Runtime, no torch, non-root (UID 10001). No HEALTHCHECK: Kubernetes
# probes the gRPC health service. PID 1 is dumb-init, which passes SIGTERM to tau-serve (which then stops
# taking calls, drains in-flight ones for --grace-period-seconds and exits 0). tau-serve alone as PID 1 would
# ignore a SIGTERM that comes before its handlers are installed (while Python imports and models load: the
# kernel drops default-action signals to a namespace's init), and the pod would wait for SIGKILL.
#
#   docker build -t tau:0.1.0 .                                   CPU, onnxruntime (the default, last target)
#   docker build --target gpu -t tau:0.1.0-gpu .                  GPU, onnxruntime-gpu on CUDA 13 + cuDNN 9
#   docker build --build-arg EXTRAS=score -t tau-score:0.1.0 .    adds tau-score's readers for batch scoring
#   docker build --build-arg MODEL_REPOSITORY=my-repo ...         bakes another repository in at /models
#   docker build --build-context wheelhouse=DIR ...               installs from DIR's wheels only, offline
#
# The serving repository is /models: mount a volume over it, or bake one in. docs/deployment.md has the rest.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG DUMB_INIT_VERSION=1.2.5.post1

# Empty unless `--build-context wheelhouse=DIR` replaces it; when it holds files, pip uses them and no index.
FROM scratch AS wheelhouse


# ---- GPU: --target gpu ----
FROM ${CUDA_IMAGE} AS gpu-base
# Ubuntu 24.04's Python 3.12. Apt versions are not pinned: the archive drops superseded versions, so a pin
# would break the build at the next security update; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM gpu-base AS gpu-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients ./clients
COPY exporter ./exporter
ARG EXTRAS=""
# onnxruntime-gpu >= 1.27 on PyPI is built for CUDA 13 (its `cuda` extra wants nvidia-cuda-runtime ~= 13.0).
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ARG DUMB_INIT_VERSION
RUN --mount=type=bind,from=wheelhouse,target=/wheels \
    if [ -n "$(ls -A /wheels)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi \
    && python3 -m venv /opt/tau \
    && /opt/tau/bin/pip install --no-cache-dir "/src[gpu${EXTRAS:+,$EXTRAS}]" "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
        "dumb-init==${DUMB_INIT_VERSION}" \
    && /opt/tau/bin/pip uninstall --yes pip setuptools

FROM gpu-base AS gpu
ARG MODEL_REPOSITORY=models
RUN useradd --uid 10001 --user-group --no-create-home --no-log-init --shell /usr/sbin/nologin tau
COPY --from=gpu-build /opt/tau /opt/tau
COPY ${MODEL_REPOSITORY} /models
# ORT_DISABLE_TELEMETRY: recent ONNX Runtime releases otherwise start their usage telemetry and, with a read-only
# root filesystem, warn at start that they cannot store a device id.
ENV PATH=/opt/tau/bin:$PATH \
    TAU_MODEL_REPOSITORY=/models \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1
USER 10001:10001
EXPOSE 8001 8002
# --single-child: the signal goes to tau-serve alone, which stops its worker processes itself.
ENTRYPOINT ["dumb-init", "--single-child", "--", "tau-serve"]


# ---- CPU: the default target ----
FROM ${PYTHON_IMAGE} AS cpu-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients ./clients
COPY exporter ./exporter
ARG EXTRAS=""
ARG ONNXRUNTIME_VERSION=1.32.0
ARG DUMB_INIT_VERSION
RUN --mount=type=bind,from=wheelhouse,target=/wheels \
    if [ -n "$(ls -A /wheels)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi \
    && python3 -m venv /opt/tau \
    && /opt/tau/bin/pip install --no-cache-dir "/src[cpu${EXTRAS:+,$EXTRAS}]" "onnxruntime==${ONNXRUNTIME_VERSION}" \
        "dumb-init==${DUMB_INIT_VERSION}" \
    && /opt/tau/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS cpu
ARG MODEL_REPOSITORY=models
RUN useradd --uid 10001 --user-group --no-create-home --no-log-init --shell /usr/sbin/nologin tau
COPY --from=cpu-build /opt/tau /opt/tau
COPY ${MODEL_REPOSITORY} /models
# ORT_DISABLE_TELEMETRY: recent ONNX Runtime releases otherwise start their usage telemetry and, with a read-only
# root filesystem, warn at start that they cannot store a device id.
ENV PATH=/opt/tau/bin:$PATH \
    TAU_MODEL_REPOSITORY=/models \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1
USER 10001:10001
EXPOSE 8001 8002
# --single-child: the signal goes to tau-serve alone, which stops its worker processes itself.
ENTRYPOINT ["dumb-init", "--single-child", "--", "tau-serve"]
