#!/usr/bin/env bash
# Builds a local Debian 13 (trixie) base image from Debian packages, for machines that cannot
# pull public images. It has the same Python 3.13 at the same path as debian:trixie-slim and
# distroless python3-debian13, so it can stand in for both (BUILD_IMAGE and RUNTIME_IMAGE).
#
#   docker/local-base.sh [IMAGE]      (default localhost/molibackup-base:trixie)
set -euo pipefail
image=${1:-localhost/molibackup-base:trixie}
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}

if "$engine" image exists "$image" 2>/dev/null; then
  echo "$image already exists"
  exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  trixie "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$engine" import - "$image" >/dev/null
echo "built $image"
