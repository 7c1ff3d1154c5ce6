# syntax=docker/dockerfile:1
# CascadeFlow Router: a slim, non-root image of the proxy, with the embedding model baked in (it is a pip
# package, installed with the project: nothing is downloaded at run time).
#
#   docker build -t cascadeflow-router:0.1.0 .
#   docker run -p 8000:8000 -e ANTHROPIC_API_KEY -e CASCADEFLOW_AUTH__MODE=api_key cascadeflow-router:0.1.0
#
# It listens on 0.0.0.0, so it starts only with proxy keys required: keys in the config (auth.keys, or
# CASCADEFLOW_AUTH__KEYS) or CASCADEFLOW_AUTH__MODE=api_key (keys made with `cascadeflow keys create`); or,
# knowingly open to anyone who reaches the port, CASCADEFLOW_AUTH__MODE=open (it logs a warning). Without any of
# these it refuses to start. docker-compose.yml and deploy/k8s/ run it behind a load balancer.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the project and its runtime dependencies (no extras) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1
RUN python -m venv /opt/cascadeflow
ENV PATH=/opt/cascadeflow/bin:$PATH
WORKDIR /src
COPY deploy/constraints-runtime.txt deploy/config.yaml ./deploy/
COPY pyproject.toml ./
COPY router ./router
COPY training ./training
COPY models ./models
COPY data ./data
# The constraints make torch and the CUDA wheels unresolvable; the check after the install fails the build if
# any torch, triton or nvidia-* distribution got in all the same.
RUN pip install --prefer-binary --constraint deploy/constraints-runtime.txt . \
 && if pip list --format=freeze | grep -iE '^(torch|torchvision|torchaudio|triton|pytorch-triton|onnxruntime-gpu|nvidia-[a-z0-9-]+)=='; then \
      echo "the runtime image must not contain torch or CUDA wheels (see deploy/constraints-runtime.txt)" >&2; \
      exit 1; \
    fi
# The model loads from the installed package with the hub offline, and the shipped config is valid.
RUN python -c "from router.embedding.encoder import Encoder; Encoder().load()" \
 && cascadeflow config check deploy/config.yaml

# ---- runtime: the environment alone, run by an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/cascadeflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    CASCADEFLOW_CONFIG=/etc/cascadeflow/config.yaml CASCADEFLOW_DATA_DIR=/var/lib/cascadeflow
RUN groupadd --system --gid 10001 cascadeflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cascadeflow --shell /usr/sbin/nologin cascadeflow \
 && mkdir -p /var/lib/cascadeflow \
 && chown 10001:10001 /var/lib/cascadeflow
COPY --from=build /opt/cascadeflow /opt/cascadeflow
COPY deploy/config.yaml /etc/cascadeflow/config.yaml
# The data directory: the outcome log's and spend ledger's spools (and SQLite files when no database is set)
VOLUME ["/var/lib/cascadeflow"]
WORKDIR /var/lib/cascadeflow
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness (/ready) is for load balancers and Kubernetes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
ENTRYPOINT ["cascadeflow"]
CMD ["proxy", "start", "--config", "/etc/cascadeflow/config.yaml", "--host", "0.0.0.0", "--port", "8000"]
