#!/usr/bin/env bash
# Build the two images with plain `docker build`:
#   streamtrain:<tag>         producer, trainer and evaluator (docker/Dockerfile)
#   streamtrain-broker:<tag>  the tansu broker alone (docker/broker.Dockerfile)
# <tag> is docker/tag.sh's (<version>-<git rev>).
#
# Offline (the default here): BASE_IMAGE=streamtrain-base:bookworm-py311 and
# WHEEL_SOURCE=wheelhouse; run docker/base-image.sh and docker/wheelhouse.sh first (make images
# does). Online: BASE_IMAGE=python:3.11-slim WHEEL_SOURCE=index docker/images.sh
#
# Env: BASE_IMAGE, WHEEL_SOURCE, APP_IMAGE (streamtrain), BROKER_IMAGE (streamtrain-broker),
# IMAGE_TAG, DOCKER_BUILD_ARGS (extra flags for docker build, e.g. --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-streamtrain-base:bookworm-py311}
WHEEL_SOURCE=${WHEEL_SOURCE:-wheelhouse}
APP_IMAGE=${APP_IMAGE:-streamtrain}
BROKER_IMAGE=${BROKER_IMAGE:-streamtrain-broker}
TAG=$(docker/tag.sh)
VERSION=${TAG%%-*}
REV=$(git rev-parse HEAD 2>/dev/null || echo unknown)

if [ "$WHEEL_SOURCE" = wheelhouse ] && [ ! -f .wheelhouse/.complete ]; then
    echo "images: .wheelhouse/ is missing or incomplete: run docker/wheelhouse.sh (make wheelhouse)" >&2
    exit 1
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [ "$WHEEL_SOURCE" = wheelhouse ]; then
    echo "images: base image $BASE_IMAGE not found: run docker/base-image.sh (make base-image)" >&2
    exit 1
fi

common=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "WHEEL_SOURCE=$WHEEL_SOURCE"
        --build-arg "VERSION=$VERSION" --build-arg "VCS_REF=$REV")
# shellcheck disable=SC2086
docker build --force-rm ${DOCKER_BUILD_ARGS:-} "${common[@]}" -f docker/broker.Dockerfile \
    -t "$BROKER_IMAGE:$TAG" .
# shellcheck disable=SC2086
docker build --force-rm ${DOCKER_BUILD_ARGS:-} "${common[@]}" -f docker/Dockerfile \
    -t "$APP_IMAGE:$TAG" .
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($APP_IMAGE|$BROKER_IMAGE):$TAG " || true
