#!/usr/bin/env bash
# Builds a local Debian 13 (trixie) base image from Debian packages, for machines that cannot
# pull public images. It has the same Python 3.13 at the same path as debian:trixie-slim and
# distroless python3-debian13, so it can stand in for both (BUILD_IMAGE and RUNTIME_IMAGE_*).
#
#   docker/local-base.sh [IMAGE] [ARCH]   (default localhost/molibackup-base:trixie, amd64)
#
# For a foreign ARCH (such as arm64 on an amd64 machine) nothing of that architecture can
# run here: the packages are only unpacked (debootstrap --foreign, then dpkg-deb -x), which
# gives a root filesystem that is right for copying onto and for inspecting, not for RUN.
set -euo pipefail
image=${1:-localhost/molibackup-base:trixie}
arch=${2:-amd64}
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}
native=$(dpkg --print-architecture)

if "$engine" image exists "$image" 2>/dev/null; then
  echo "$image already exists"
  exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
packages=python3,python3-venv,ca-certificates
if [ "$arch" = "$native" ]; then
  debootstrap --variant=minbase --include="$packages" trixie "$rootfs" "$mirror" >/dev/null
else
  debootstrap --foreign --arch="$arch" --variant=minbase --include="$packages" \
    trixie "$rootfs" "$mirror" >/dev/null
  for deb in "$rootfs"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$rootfs"
  done
  rm -rf "$rootfs/debootstrap"
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | "$engine" import --arch "$arch" --os linux - "$image" >/dev/null
echo "built $image ($arch)"
