# conversations-user-sync: `user-sync serve` by default; `migrate`, `sync`, `status` and
# `emulator` with the same image.
#
# The install steps are the ones .ci/run runs on every CI run:
#   pip install --require-hashes -r <lock file> -r requirements-build.lock
#                              every dependency and the build backend pinned and hash-checked
#   pip install --no-deps --no-build-isolation <the project>
#                              the project itself, nothing re-resolved, built by that backend
# CI installs requirements-dev.lock, a superset pinning the same versions as requirements.lock.
# The runtime venv keeps neither pip nor setuptools: what it ships is what the audit checks.
# CI also builds this file as it is with buildah and runs the image with podman, with no Docker
# engine and no registry (.ci/image_check.py). No `# syntax=` line: BuildKit would fetch a
# frontend image from a registry for it, and nothing here needs a newer frontend.
#
#   docker build -t conversations-user-sync:dev .
#   docker run --rm -p 8080:8080 --env-file .env conversations-user-sync:dev

FROM python:3.11-slim-bookworm AS builder

WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
COPY requirements.lock requirements-build.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock -r requirements-build.lock

COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip uninstall --yes setuptools pip


FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="conversations-user-sync" \
      org.opencontainers.image.description="Keeps the Users of a Twilio Conversations Service equal to an internal users table in Postgres" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed uid/gid, so that Kubernetes' runAsUser/fsGroup and volume permissions can name it.
RUN groupadd --system --gid 10001 usersync \
    && useradd --system --uid 10001 --gid usersync --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin usersync

# Bytecode was compiled by pip in the builder; the root filesystem may be read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /opt/venv /opt/venv

# The migrations are in the package (service/migrations): `user-sync migrate` and /readyz need
# no file beside it, from any working directory.
WORKDIR /
USER 10001:10001
EXPOSE 8080

# Liveness only: the process answers. Readiness (database, migrations) is /readyz, for
# orchestrators that route traffic. No curl in slim images: Python's urllib does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('USERSYNC_HTTP_PORT', '8080') + '/healthz', timeout=4)"]

ENTRYPOINT ["user-sync"]
CMD ["serve"]
