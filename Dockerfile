# The orchestrator worker image: python:3.11-slim, every Python file checked against requirements.lock's hashes,
# non-root (uid 10001). Not built by CI (the build machines have no container engine); see docs/helm.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so editing the code does not invalidate this layer. The lock is the one `make demo` and
# `make test` install (all extras): every file it names is fetched and checked here, in the build stage only.
COPY requirements.lock ./
RUN pip download --require-hashes --no-deps -r requirements.lock -d /wheels
# README.md is pyproject's readme: setuptools needs it to build the package.
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workflows ./workflows
# The project as a wheel, built with the lock's setuptools (no build isolation: nothing unpinned is fetched).
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-index --find-links /wheels --upgrade setuptools \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /wheels .
# The image's venv takes the wheel and its runtime dependencies only, resolved with no index among the checked
# files: the lock's versions, and none of the demo's or the tests' tools (installing the whole lock would more
# than double the venv, 0.5 to 1.2 GB: the Temporal servers, helm, mypy). pip check: the lock covers them all.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels orchestrator \
 && /opt/venv/bin/pip check

FROM python:3.11-slim
RUN groupadd --gid 10001 orchestrator \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin orchestrator
COPY --from=build /opt/venv /opt/venv
# The chart mounts the root filesystem read-only with an emptyDir on /tmp: nothing may write elsewhere.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    ORCHESTRATOR_LOG_FORMAT=json \
    ORCHESTRATOR_HEALTH_HOST=0.0.0.0 \
    ORCHESTRATOR_HEALTH_PORT=8080
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# SIGTERM goes straight to the worker (exec form, no shell), which drains before exiting.
ENTRYPOINT ["orchestrator", "worker"]
CMD ["--health-port", "8080"]
