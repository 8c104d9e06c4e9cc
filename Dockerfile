# syntax=docker/dockerfile:1
# dicomlake service image. `azd up` builds it (see azure.yaml); by hand:
#   docker build -t dicomlake .   or, with no local Docker:   az acr build -r <registry> -t dicomlake:<tag> .
# The base is the Python minor version used in development and CI (3.11).

# ---- build: a virtual environment with the dependencies, then the service ------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
RUN python -m venv /opt/dicomlake

# Dependencies first, read from pyproject.toml, so this layer is reused until they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/dicomlake/bin/pip install --no-cache-dir -r requirements.txt

# Then the service itself, without touching the dependencies again.
COPY README.md ./
COPY service ./service
RUN /opt/dicomlake/bin/pip install --no-cache-dir --no-deps .

# ---- runtime: the virtual environment only, run as a numeric non-root user ---------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="dicomlake" \
      org.opencontainers.image.description="DICOMweb server whose images live in your Azure Data Lake Storage Gen2 account" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/dicomlake/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DICOM_HOST=0.0.0.0 \
    DICOM_PORT=8080

RUN groupadd --system --gid 10001 dicomlake \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dicomlake

COPY --from=build /opt/dicomlake /opt/dicomlake

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# Liveness only (the process answers); readiness (database and storage) is the platform's probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4)"]

# `python -m dicomlake serve` validates the settings (a clear message and exit 2 if they are wrong),
# then runs uvicorn on the app factory with proxy headers from the platform's ingress and, on SIGTERM,
# 30 s for in-flight requests (the Container App allows 40 s). `docker run <image> migrate` applies
# the database migrations and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "dicomlake"]
CMD ["serve"]
