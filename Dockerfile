# The sart image: sartd (bgp, agent, fib, controller), sart-controller, sart, and the CNI
# installer (python -m sart.cni.install). scripts/build-image builds the same image without
# Docker (Debian packages and PyPI only; tests/test_image.py checks and runs it): keep the two
# in step.
#
#   version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/sart/__init__.py)
#   docker build --build-arg SART_VERSION="$version" -t "sart:$version" .
#
# The version is written once, in src/sart/__init__.py; the label takes it from the build
# argument (scripts/build-image passes the same).
#
# The base is Debian bookworm with Debian's Python 3.11 rather than python:3.11-slim, whose
# interpreter is built from source: Debian's packages can be installed without a registry, so
# both builds give the same files.
FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 sart \
    && useradd --system --key SYS_UID_MAX=65532 --uid 65532 --gid 65532 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sart \
    && mkdir -p /run/sart

FROM base AS wheels
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN python3 -m venv /build && /build/bin/pip wheel --no-cache-dir --wheel-dir /wheels '/src[all]'

FROM base
ARG SART_VERSION
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python3 -m venv /opt/sart \
    && /opt/sart/bin/pip install --no-cache-dir --no-index --disable-pip-version-check \
        --find-links /wheels 'sart[all]'
ENV PATH=/opt/sart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title=sart \
      org.opencontainers.image.version=${SART_VERSION} \
      org.opencontainers.image.source=https://github.com/terassyi/sart
# Non-root by default (the controller); the DaemonSet's containers run as root with only the
# capabilities they need (manifests/deploy/sartd.yaml).
USER 65532:65532
ENTRYPOINT ["sartd"]
CMD ["--help"]
