# Tau's CPU serving image: no torch, non-root, the server handles SIGTERM as PID 1.
# Build: docker build -t tau .      Run: docker run -p 8001:8001 -p 8002:8002 tau
# Mount your own repository over /models, or set TAU_MODEL_REPOSITORY.
# (The GPU variant, probes and manifests come with the Kubernetes work; see k8s/README.md.)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients ./clients
COPY exporter ./exporter
RUN python -m venv /opt/tau && /opt/tau/bin/pip install --no-cache-dir '.[cpu]'

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tau
COPY --from=build /opt/tau /opt/tau
COPY models /models
ENV PATH=/opt/tau/bin:$PATH \
    TAU_MODEL_REPOSITORY=/models \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8001 8002
ENTRYPOINT ["tau-serve"]
