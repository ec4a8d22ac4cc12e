# syntax=docker/dockerfile:1
# One image for every role of the deployment (see compose.yaml and docs/operations.md):
#   systemprompt infra db migrate | infra beat | infra worker ... | infra ui | celery -A worker.app flower
# The entrypoint is the `systemprompt` command; Flower overrides it with `celery`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build stage
# Builds the project and its dependencies into wheels. Everything here (pip caches,
# sources, any build tool a dependency might need) stays in this stage.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# README.md* : the wildcard lets the build work whether or not the readme exists yet.
COPY pyproject.toml README.md* ./
COPY jobs_core ./jobs_core
COPY extensions ./extensions
COPY worker ./worker
COPY beat ./beat
COPY control ./control
COPY cli ./cli
COPY ui ./ui
# Runtime dependencies plus Flower; never the dev extras (pytest, ruff, mypy ...).
RUN pip wheel --wheel-dir /wheels ".[flower]"

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# tzdata: profiles name IANA time zones (scheduler.timezone); no compilers are installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "systemprompt-jobs[flower]"
# An unprivileged user; the image runs nothing as root.
RUN groupadd --system --gid 10001 systemprompt \
    && useradd --system --uid 10001 --gid systemprompt --home-dir /app --create-home \
       --shell /usr/sbin/nologin systemprompt
WORKDIR /app
# The profile is mounted here by compose.yaml (or any file: set SYSTEMPROMPT_PROFILE).
# Without one the built-in defaults and the installed extensions apply.
COPY --chown=systemprompt:systemprompt profile.example.yaml /app/profile.example.yaml
USER systemprompt:systemprompt
# No HEALTHCHECK here: the same image runs one-shot migrations, beats, workers and
# Flower, and only some roles have something to probe. compose.yaml sets a healthcheck
# per service (worker: `celery inspect ping` of its own node; flower: /healthcheck;
# ui: /healthz).
ENTRYPOINT ["systemprompt"]
CMD ["--help"]
