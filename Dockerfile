# syntax=docker/dockerfile:1
# CryptoSentinel images: one build stage per role installs the locked dependencies (uv.lock) with uv into
# /opt/venv; each runtime target copies only that venv and the files its commands read onto python:3.11-slim.
#
#   docker build --target api       -t cryptosentinel-api .        # FastAPI on :8000 (`cryptosentinel serve`)
#   docker build --target dashboard -t cryptosentinel-dashboard .  # Streamlit on :8501 (`cryptosentinel dashboard`)
#   docker build --target worker    -t cryptosentinel-worker .     # scheduled pipelines (`cryptosentinel schedule`)
#
# Settings come from CRYPTOSENTINEL_* variables (see .env.example); /data and /reports are volumes.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: uv and the lock, shared by the three build stages ----
FROM ${PYTHON_IMAGE} AS build
# uv from PyPI at the version the lock was made with (the build stage only: the runtimes never see it).
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# the dependencies first (a layer that changes only with the lock), then the package itself. Not installed:
# nvidia-nccl-cu12 (490 MB), which xgboost dlopens only for multi-GPU training and skips when it is absent.
COPY pyproject.toml uv.lock README.md ./

FROM build AS build-api
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-install-project --extra api
COPY cryptosentinel/ cryptosentinel/
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-editable --extra api

FROM build AS build-dashboard
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-install-project --extra dashboard
COPY cryptosentinel/ cryptosentinel/
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-editable --extra dashboard

FROM build AS build-worker
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-install-project --extra pipelines
COPY cryptosentinel/ cryptosentinel/
RUN uv sync --frozen --no-dev --no-install-package nvidia-nccl-cu12 --no-editable --extra pipelines

# ---- runtime base: a non-root user, the data and reports volumes, settings from the environment ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
    && mkdir -p /data /reports \
    && chown app:app /data /reports
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    CRYPTOSENTINEL_DATA_DIR=/data \
    CRYPTOSENTINEL_REPORTS_DIR=/reports \
    CRYPTOSENTINEL_LOG_JSON=true
# /app is the project root the commands look for: pyproject.toml marks it, app/ and nbs/ sit beside it.
WORKDIR /app
COPY pyproject.toml ./
VOLUME ["/data", "/reports"]

# ---- api: FastAPI on uvicorn ----
FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
COPY app/__init__.py app/__init__.py
COPY app/api/ app/api/
ENV CRYPTOSENTINEL_API__HOST=0.0.0.0 \
    CRYPTOSENTINEL_API__PORT=8000
USER 10001:10001
EXPOSE 8000
# /health: the process answers. /ready (champions loaded, data fresh) stays 503 until the first training,
# so it is the deployment's smoke test rather than the container's liveness.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CRYPTOSENTINEL_API__PORT', '8000') + '/health', timeout=4)"]
CMD ["cryptosentinel", "serve"]

# ---- dashboard: Streamlit, reading everything from the API ----
FROM runtime AS dashboard
COPY --from=build-dashboard /opt/venv /opt/venv
COPY app/__init__.py app/__init__.py
COPY app/dashboard/ app/dashboard/
ENV CRYPTOSENTINEL_API_URL=http://api:8000
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["cryptosentinel", "dashboard", "--host", "0.0.0.0", "--port", "8501"]

# ---- worker: the Prefect flows that run the pipeline notebooks (papermill, ipykernel) on their schedules ----
FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
COPY nbs/ nbs/
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
USER 10001:10001
# the worker serves no port: alive while the Prefect server's API (PREFECT_API_URL) answers its polls
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['PREFECT_API_URL'].rstrip('/') + '/health', timeout=8)"]
CMD ["cryptosentinel", "schedule"]
