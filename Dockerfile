# syntax=docker/dockerfile:1
# molibackup container image: a virtual environment built from hash-locked dependencies on
# Debian 13, copied onto distroless Python (same Python 3.13 at the same path, no shell, no
# package manager). The base images are build arguments, pinned by digest (the runtime one
# per platform), so a build is reproducible and a machine without registry access can pass
# local equivalents.
#
# Multi-platform without emulation: the build stage always runs on the build machine's own
# platform; it installs the wheels of the *target* platform (pip --platform, hash-locked) and
# compiles bytecode natively (the same Python 3.13 as the runtime). The final stage only
# copies onto the target platform's runtime base (RUNTIME_IMAGE, one per platform: see
# `make docker-release`): no foreign code ever runs.
ARG BUILD_IMAGE=docker.io/library/debian:trixie-slim@sha256:3a39a0592364683e6bab97937b72cad5a8fa6dcbbee90edb3bb48c7f8e94f258
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian13@sha256:931a490beb37db6a1d137ad11ed47ae4c0d4741ca5c2285818b49e9a8ee11c56

FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
ARG SOURCE_DATE_EPOCH
ARG TARGETARCH
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/sh", "-eu", "-c"]
# debian:trixie-slim has no Python; a local base made from Debian packages may have it already.
# Versions are pinned by the base image's digest, not per package.
# hadolint ignore=DL3008
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
      apt-get update; \
      apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi
# Build tools (pip, hatchling) stay in their own venv; the runtime venv gets no pip at all.
COPY docker/build-requirements.lock requirements.lock /locks/
RUN python3 -m venv /opt/build-tools; \
    /opt/build-tools/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: \
      -r /locks/build-requirements.lock; \
    python3 -m venv --without-pip /opt/molibackup; \
    mkdir -p /opt/sbom; \
    case "${TARGETARCH:-amd64}" in \
      amd64) machine=x86_64 ;; \
      arm64) machine=aarch64 ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    site=$(/opt/molibackup/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))"); \
    /opt/build-tools/bin/pip install --quiet --no-compile --require-hashes --no-deps \
      --only-binary=:all: --implementation cp --python-version 3.13 \
      --abi cp313 --abi abi3 --abi none \
      --platform "manylinux_2_17_$machine" --platform "manylinux2014_$machine" \
      --platform "manylinux_2_28_$machine" --platform "manylinux_2_34_$machine" \
      --report /opt/sbom/dependencies.json --target "$site" -r /locks/requirements.lock
COPY pyproject.toml README.md LICENSE /src/
COPY src /src/src
COPY schema /src/schema
COPY docker/sbom_hashes.py /opt/sbom/
RUN /opt/build-tools/bin/pip wheel --quiet --no-deps --no-build-isolation -w /wheels /src; \
    /opt/build-tools/bin/pip --python /opt/molibackup/bin/python install --quiet --no-compile \
      --no-deps --report /opt/sbom/molibackup.json /wheels/*.whl; \
    # Bytecode compiled now, checked by hash not mtime: nothing to write on a read-only root,
    # and identical bytes on every build.
    /opt/molibackup/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      /opt/molibackup/lib; \
    # The SBOM: every distribution installed in the image, as CycloneDX JSON (reproducible:
    # no serial number or timestamp), with the SHA-256 of the wheel each came from.
    /opt/build-tools/bin/cyclonedx-py environment --output-reproducible --of JSON \
      --pyproject /src/pyproject.toml --output-file /opt/sbom/molibackup.cdx.json \
      /opt/molibackup/bin/python; \
    python3 /opt/sbom/sbom_hashes.py /opt/sbom/molibackup.cdx.json \
      /opt/sbom/dependencies.json /opt/sbom/molibackup.json

FROM ${RUNTIME_IMAGE}
ARG VERSION
ARG REVISION=unknown
LABEL org.opencontainers.image.title="molibackup" \
      org.opencontainers.image.description="Creates and rotates AWS EBS snapshots" \
      org.opencontainers.image.source="https://github.com/molibackup/molibackup" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/molibackup /opt/molibackup
COPY --from=build /opt/sbom/molibackup.cdx.json /usr/share/doc/molibackup/sbom.cdx.json
ENV PATH=/opt/molibackup/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# distroless's "nonroot": a fixed numeric UID/GID, so Kubernetes can check runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["molibackup"]
