# The vault's image: the package and its dependencies built as wheels, installed into a slim
# runtime that runs as an unprivileged user. Configuration is environment variables only
# (docs/operations.md); TLS terminates in a proxy in front.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vault ./vault
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VAULT_DATA_DIR=/var/lib/vault/data \
    VAULT_LOG_JSON=true
RUN useradd --system --uid 10001 --home-dir /var/lib/vault --shell /usr/sbin/nologin vault \
    && mkdir -p /var/lib/vault/data /var/lib/vault/blobs /var/lib/vault/keys /var/lib/vault/backups \
    && chown -R vault:vault /var/lib/vault \
    && chmod 700 /var/lib/vault/data /var/lib/vault/blobs /var/lib/vault/keys /var/lib/vault/backups
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels vault && rm -rf /wheels
USER vault
WORKDIR /var/lib/vault
EXPOSE 8000
# Ready = the database, the blob store and the key provider answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
# SIGTERM: in-flight requests finish, then the process exits 0.
STOPSIGNAL SIGTERM
CMD ["vault", "serve", "--host", "0.0.0.0", "--port", "8000"]
