# CascadeFlow Router: a slim image of the proxy (embedded state; no external service needed).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    CASCADEFLOW_DATA_DIR=/app CASCADEFLOW_LEARNED_ROUTER__MODELS_DIR=/app/models
WORKDIR /app

COPY pyproject.toml README.md ./
COPY router ./router
COPY training ./training
COPY models ./models
COPY data ./data
# The CPU build of torch first (set TORCH_INDEX_URL to your PyTorch CPU wheel index); otherwise pip resolves
# sentence-transformers' torch requirement to a multi-GB CUDA build.
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==2.13.0"; fi \
 && pip install --no-cache-dir .

RUN useradd --create-home --uid 10001 cascadeflow \
 && mkdir -p /app/var /app/.cache \
 && chown cascadeflow /app/var /app/.cache /app/models
# data_dir is /app: var/ holds the outcome log and its spool, .cache/ the semantic cache snapshot (when the
# cache is enabled); models/ the shipped and retrained artifacts
VOLUME ["/app/var"]
USER cascadeflow
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
ENTRYPOINT ["cascadeflow"]
# On 0.0.0.0 the proxy starts only with proxy keys in its config (auth.keys) or when told it may run open
# (CASCADEFLOW_SERVER__OPEN_WITHOUT_KEYS=true): without keys anyone reaching the port spends the provider keys.
CMD ["proxy", "start", "--host", "0.0.0.0", "--port", "8000"]
