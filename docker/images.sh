#!/usr/bin/env bash
# Build the images with plain `docker build`:
#   streamtrain:<tag>         producer, trainer, evaluator and predictor (docker/Dockerfile), TensorFlow 2.21
#   streamtrain-broker:<tag>  the tansu broker alone (docker/broker.Dockerfile)
# or, with IMAGE_VARIANT=tfio, only
#   streamtrain:<tag>-tfio    the same image with tensorflow-io (TensorFlow 2.16), for --ingest tensorflow-io
# <tag> is docker/tag.sh's (<version>-<git rev>). The variants are described in docker/variant.sh.
#
# Offline (the default here): BASE_IMAGE=streamtrain-base:bookworm-py311 and
# WHEEL_SOURCE=wheelhouse; run docker/base-image.sh and docker/wheelhouse.sh (with the same
# IMAGE_VARIANT) first (make images / make images-tfio do). Online:
# BASE_IMAGE=python:3.11-slim WHEEL_SOURCE=index docker/images.sh
#
# Env: BASE_IMAGE, WHEEL_SOURCE, IMAGE_VARIANT ("" or tfio), APP_IMAGE (streamtrain),
# BROKER_IMAGE (streamtrain-broker), IMAGE_TAG, DOCKER_BUILD_ARGS (extra flags for docker build,
# e.g. --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091  # docker/variant.sh: sets VARIANT_*
. docker/variant.sh

BASE_IMAGE=${BASE_IMAGE:-streamtrain-base:bookworm-py311}
WHEEL_SOURCE=${WHEEL_SOURCE:-wheelhouse}
APP_IMAGE=${APP_IMAGE:-streamtrain}
BROKER_IMAGE=${BROKER_IMAGE:-streamtrain-broker}
TAG=$(docker/tag.sh)
VERSION=${TAG%%-*}
REV=$(git rev-parse HEAD 2>/dev/null || echo unknown)

if [ "$WHEEL_SOURCE" = wheelhouse ] && [ ! -f "$VARIANT_WHEELHOUSE/.complete" ]; then
    echo "images: $VARIANT_WHEELHOUSE/ is missing or incomplete: run" \
         "IMAGE_VARIANT='$IMAGE_VARIANT' docker/wheelhouse.sh (make wheelhouse${IMAGE_VARIANT:+-$IMAGE_VARIANT})" >&2
    exit 1
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [ "$WHEEL_SOURCE" = wheelhouse ]; then
    echo "images: base image $BASE_IMAGE not found: run docker/base-image.sh (make base-image)" >&2
    exit 1
fi

common=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "WHEEL_SOURCE=$WHEEL_SOURCE"
        --build-arg "VERSION=$VERSION" --build-arg "VCS_REF=$REV")
variant=(--build-arg "EXTRAS=$VARIANT_EXTRAS" --build-arg "CONSTRAINTS=$VARIANT_CONSTRAINTS"
         --build-arg "WHEELHOUSE=$VARIANT_WHEELHOUSE")
built=()
if [ -z "$IMAGE_VARIANT" ]; then
    # The broker does not depend on the variant: built with the default image only.
    # shellcheck disable=SC2086
    docker build --force-rm ${DOCKER_BUILD_ARGS:-} "${common[@]}" -f docker/broker.Dockerfile \
        -t "$BROKER_IMAGE:$TAG" .
    built+=("$BROKER_IMAGE:$TAG")
fi
# shellcheck disable=SC2086
docker build --force-rm ${DOCKER_BUILD_ARGS:-} "${common[@]}" "${variant[@]}" -f docker/Dockerfile \
    -t "$APP_IMAGE:$TAG$VARIANT_TAG_SUFFIX" .
built+=("$APP_IMAGE:$TAG$VARIANT_TAG_SUFFIX")
for image in "${built[@]}"; do
    docker image inspect --format "$image  {{.Size}} bytes" "$image"
done
# The classic builder keeps each build's earlier stages as untagged images (about 2 GB: the wheels and the venv
# before pruning). They only speed up the next build, which a CI run never makes: there they go at once.
if [ "${CI:-}" = true ]; then
    docker image prune -f >/dev/null
fi
