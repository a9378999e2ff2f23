# syntax=docker/dockerfile:1
# The Login Portal's image: `flask --app oidc_provider serve` (granian) on port
# 8000, JSON logs, as an unprivileged user. Build: docker build -t login-portal .
# compose.yaml runs it (two instances, a worker); README.md, section "Production".

# --- builder: a virtual environment with the portal and its dependencies -----------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
COPY setup.cfg pyproject.toml README.md ./
COPY oidc_provider/ oidc_provider/
# Installed in place (editable): the portal runs from /app, beside its templates.
# The cache mount keeps downloads between builds and out of the image.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -e '.[postgres]'

# --- runtime: the environment and the source, nothing to build with ----------------
FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000 \
    LOG_FORMAT=json \
    OIDC_CLIENTS_FILE=/app/clients.yaml \
    OIDC_KEYS_DIR=/app/instance/keys
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY templates/ templates/
# instance/ is the one folder the portal writes to (its outbox folder for SMS
# without a gateway, a generated SECRET_KEY when none is set: set one).
RUN mkdir -p /app/instance && chown 10001:10001 /app/instance
# A numeric user, so that orchestrators can check it is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 8000
# Liveness: the process answers. Not readiness: a database outage must not make
# every instance "unhealthy" and restarted; they answer 503 + Retry-After meanwhile.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('WEB_PORT', '8000'), timeout=2)"]
CMD ["flask", "--app", "oidc_provider", "serve"]
