# Dorsi: the API in a container, running as a non-root user.
#
#   docker build -t dorsi .
#   docker run -p 8000:8000 -e DORSI_SECRET_KEY=... -v dorsi-var:/app/var dorsi
#
# The project lives at /app in both stages. app/core/config.py finds pyproject.toml (the
# Alembic config) and the default SQLite file (var/dorsi.db) relative to the `app`
# package, so the package Python imports must be /app/app, not a copy in site-packages:
# it is installed in editable mode (a path hook in /opt/venv pointing at /app/app), and
# /app is copied to the runtime stage at the same path.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN pip install uv==0.13.9 \
    && python -m venv --without-pip /opt/venv

WORKDIR /app

# Dependencies first, so that a change to the code does not reinstall them.
COPY requirements.lock ./
RUN uv pip install --python /opt/venv/bin/python -r requirements.lock

COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN uv pip install --python /opt/venv/bin/python --no-deps -e . \
    && /opt/venv/bin/python -m compileall -q app migrations


FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 dorsi \
    && useradd --system --uid 10001 --gid dorsi --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin dorsi

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
# The default SQLite database lives in /app/var; mount a volume there to keep it.
RUN mkdir -p /app/var && chown dorsi:dorsi /app/var

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DORSI_ENVIRONMENT=production

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["dorsi", "healthcheck", "--url", "http://127.0.0.1:8000/healthz"]

# Migrates the schema and loads the catalog, then serves with uvicorn. The background
# work runs from this same image with the command `dorsi worker` (webhooks, alerts,
# overview figures, pruning); run at least one beside the API.
CMD ["dorsi", "serve", "--host", "0.0.0.0", "--port", "8000"]
