#!/usr/bin/env bash
# Build the offline base image: a Debian 12 (bookworm) minbase root filesystem with python3
# (3.11), python3-venv and ca-certificates, made with debootstrap and loaded with `docker import`.
# It stands in for python:3.11-slim where no container registry can be reached.
#
#   docker/base-image.sh [IMAGE]        default IMAGE: streamtrain-base:bookworm-py311
#
# Needs root, debootstrap (installed from Debian if missing) and a Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian; an internal mirror works the same).
# Does nothing when IMAGE already exists, unless FORCE=1.
set -euo pipefail

IMAGE=${1:-streamtrain-base:bookworm-py311}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base-image: $IMAGE already exists (FORCE=1 rebuilds it)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "base-image: debootstrap needs root" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

ROOTFS=$(mktemp -d /tmp/streamtrain-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "base-image: debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"

# Slim it: package caches and lists, docs, man pages, locales. apt still works after
# `apt-get update` if someone needs it in a derived image.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/linda
find "$ROOTFS"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
# Same apt source as the official Debian images, so derived images can apt-get install.
echo "deb $MIRROR $SUITE main" >"$ROOTFS"/etc/apt/sources.list
# `python` like the official python images (Dockerfiles call python3 anyway).
ln -sf python3 "$ROOTFS"/usr/bin/python

echo "base-image: importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debian $SUITE minbase + python3 (streamtrain offline base)" \
    - "$IMAGE" >/dev/null
docker image ls "$IMAGE"
