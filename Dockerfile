# syntax=docker/dockerfile:1
# One image for every role (api, worker, trainer): the wheel built from this repository, never the
# source tree, installed in a virtual environment and run as a non-root user.
#
#   CPU (api, worker):  docker build -t longweave:cpu .
#   CUDA (trainer):     docker build -t longweave:cuda \
#                         --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                         --build-arg TORCH=torch==2.13.0 --build-arg TORCH_INDEX= .
#
# BASE chooses the runtime base; a base without Python (the CUDA runtime images) gets the
# distribution's python3. TORCH is pinned (an unpinned torch pulls a multi-GB CUDA build); for the
# CPU image TORCH_INDEX names PyTorch's CPU wheel index (empty: the default index).
ARG BASE=python:3.12-slim

FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY generators generators
COPY service service
COPY trainer trainer
COPY clients clients
RUN python -m pip wheel --no-deps --no-cache-dir -w /dist .

FROM ${BASE} AS runtime
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=service,trainer
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/longweave PATH=/opt/longweave/bin:$PATH \
    LONGWEAVE_HOME=/data HF_HOME=/models
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/longweave
RUN if [ -n "$TORCH_INDEX" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX" "$TORCH"; \
    else pip install --no-cache-dir "$TORCH"; fi
COPY --from=builder /dist /dist
RUN pip install --no-cache-dir "$(ls /dist/longweave-*.whl)[${EXTRAS}]" && rm -rf /dist
RUN useradd --create-home --uid 10001 longweave \
    && mkdir -p /data /models && chown longweave:longweave /data /models
USER longweave
WORKDIR /home/longweave
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"
ENTRYPOINT ["longweave"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
