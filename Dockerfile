# cnnzoo's server image (CPU): `zoo serve` on a model mounted at /mnt/models (KServe's storage convention).
#   docker build -t cnnzoo:0.1.0 .
#   docker run --rm -p 8080:8080 --read-only --tmpfs /var/cache/zoo:mode=1777 -v "$PWD/runs/lenet5-x:/mnt/models:ro" cnnzoo:0.1.0
# The GPU variant is Dockerfile.gpu (a CUDA runtime base, the `gpu` extra). Checked by tests/test_deploy_image.py
# (hadolint; the entrypoint and arguments the manifests under deploy/ rely on).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: a virtual environment with cnnzoo and the CPU runtimes (wheels only: no compiler needed here either)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# PyPI's Linux torch wheels are CUDA builds of several GB: the CPU build comes from PyTorch's own index
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zoo ./zoo
COPY infer ./infer
COPY export ./export
COPY serve ./serve
RUN pip install --no-cache-dir "/src[cpu,server]"

# --- run: the slim base, the virtual environment, a non-root user; nothing else
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 zoo \
    && useradd --no-log-init --uid 10001 --gid zoo --no-create-home --home-dir /var/cache/zoo --shell /usr/sbin/nologin zoo \
    && mkdir -p /mnt/models /var/cache/zoo \
    && chown zoo:zoo /var/cache/zoo
COPY --from=build /opt/venv /opt/venv
# /var/cache/zoo is the one writable directory (an emptyDir in deploy/): OpenVINO's and ONNX Runtime's
# caches, temporary files (zoo serve makes tmp/ there), and HOME for any library that writes under it
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/cache/zoo \
    ZOO_CACHE_DIR=/var/cache/zoo
WORKDIR /var/cache/zoo
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["zoo", "serve"]
CMD ["/mnt/models", "--host", "0.0.0.0", "--port", "8080"]
