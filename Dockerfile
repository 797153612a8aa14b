# The orchestrator worker image: python:3.11-slim, dependencies pinned by constraints.txt, non-root (uid 10001).
# Not built by CI (the build machines have no container engine); see docs/helm.md for building and pushing.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so editing the code does not invalidate this layer.
COPY constraints.txt ./
RUN pip install -r constraints.txt
# README.md is pyproject's readme: setuptools needs it to build the package.
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workflows ./workflows
# -c keeps every dependency at the pinned version; --no-deps would hide a dependency missing from it.
RUN pip install -c constraints.txt . && pip check

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
