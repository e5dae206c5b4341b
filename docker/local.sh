#!/usr/bin/env bash
# Run the whole streamtrain system as containers on one Docker network, with plain `docker`
# (no compose): the broker (its own image), producer, trainer and evaluator (the one app image),
# one named volume shared by trainer (read-write) and evaluator (read-only).
# Configuration is only STREAMTRAIN_* environment variables, from env files (the chart's set).
# Every container runs as the chart runs it: --read-only, --user 10001:10001, --cap-drop ALL,
# no-new-privileges, a tmpfs /tmp.
#
#   docker/local.sh up       network, volume, broker, topics, trainer, evaluator, producer
#   docker/local.sh down     remove the stack's containers, network and volume
#   docker/local.sh logs     follow the logs of all of them (Ctrl-C stops following)
#   docker/local.sh status   containers, health, and each component's /status
#
# Env:
#   STACK            name prefix and label of everything created (default streamtrain-local)
#   IMAGE_TAG        image tag (default: docker/tag.sh, <version>-<git rev>)
#   APP_IMAGE        default streamtrain; BROKER_IMAGE default streamtrain-broker
#   LOCAL_ENV_DIR    folder with common.env, producer.env, trainer.env, evaluator.env
#                    (default docker/local)
#   PARTITIONS       partitions per topic (default 2)
#   PUBLISH_PORTS    1 (default): publish 9101-9103 on 127.0.0.1; 0: nothing published
#   LOCAL_PRODUCER_ARGS, LOCAL_TRAINER_ARGS, LOCAL_EVALUATOR_ARGS
#                    extra `docker run` arguments for one component (e.g. another mount)
#   KEEP_VOLUME      1: `down` keeps the model volume
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${STACK:-streamtrain-local}
TAG=${IMAGE_TAG:-$(docker/tag.sh)}
APP=${APP_IMAGE:-streamtrain}:$TAG
BROKER=${BROKER_IMAGE:-streamtrain-broker}:$TAG
ENV_DIR=${LOCAL_ENV_DIR:-docker/local}
PARTITIONS=${PARTITIONS:-2}
PUBLISH_PORTS=${PUBLISH_PORTS:-1}
LABEL="io.streamtrain.stack=$STACK"
NET="$STACK-net"
VOLUME="$STACK-data"

# How the chart runs the containers (restricted Pod Security Standard, read-only root).
HARDENING=(--read-only --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges
           --tmpfs '/tmp:rw,nosuid,nodev,size=256m,mode=1777')

log() { echo "local: $*" >&2; }

publish() {  # publish PORT: the -p flags for a component's HTTP port, on loopback only
    if [ "$PUBLISH_PORTS" = 1 ]; then echo "-p 127.0.0.1:$1:$1"; fi
}

wait_running() {  # wait_running CONTAINER: fail with its logs if it is not running
    if [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" != true ]; then
        log "$1 is not running; its last log lines:"
        docker logs --tail 30 "$1" >&2 || true
        return 1
    fi
}

up() {
    if [ -n "$(docker ps -aq --filter "label=$LABEL")" ]; then
        log "$STACK is already up (or left over): make local-down first"
        docker ps -a --filter "label=$LABEL" --format '  {{.Names}}\t{{.Status}}' >&2
        exit 1
    fi
    for image in "$APP" "$BROKER"; do
        docker image inspect "$image" >/dev/null 2>&1 || { log "no image $image: run make images"; exit 1; }
    done
    for f in common producer trainer evaluator; do
        [ -f "$ENV_DIR/$f.env" ] || { log "missing $ENV_DIR/$f.env"; exit 1; }
    done
    docker network inspect "$NET" >/dev/null 2>&1 || docker network create --label "$LABEL" "$NET" >/dev/null
    docker volume inspect "$VOLUME" >/dev/null 2>&1 || docker volume create --label "$LABEL" "$VOLUME" >/dev/null

    log "broker $BROKER"
    docker run -d --name "$STACK-broker" --label "$LABEL" --network "$NET" --network-alias broker \
        "${HARDENING[@]}" "$BROKER" --advertised-listener-url tcp://broker:9092 >/dev/null
    wait_running "$STACK-broker"

    # The topics command retries until the broker answers (no need to wait for its HEALTHCHECK).
    log "topics ($PARTITIONS partitions each)"
    local ok=0
    for _ in $(seq 1 10); do
        if docker run --rm --label "$LABEL" --network "$NET" "${HARDENING[@]}" \
              --env-file "$ENV_DIR/common.env" "$APP" topics --partitions "$PARTITIONS" >&2; then
            ok=1; break
        fi
        sleep 2
    done
    [ "$ok" = 1 ] || { log "could not create the topics"; exit 1; }

    log "trainer, evaluator, producer ($APP)"
    # shellcheck disable=SC2046,SC2086
    docker run -d --name "$STACK-trainer" --label "$LABEL" --network "$NET" --network-alias trainer \
        "${HARDENING[@]}" --stop-timeout 40 -v "$VOLUME:/data" \
        --env-file "$ENV_DIR/common.env" --env-file "$ENV_DIR/trainer.env" \
        $(publish 9102) ${LOCAL_TRAINER_ARGS:-} "$APP" train >/dev/null
    # shellcheck disable=SC2046,SC2086
    docker run -d --name "$STACK-evaluator" --label "$LABEL" --network "$NET" --network-alias evaluator \
        "${HARDENING[@]}" -v "$VOLUME:/data:ro" \
        --tmpfs /var/lib/streamtrain/reports:rw,nosuid,nodev,size=256m,uid=10001,gid=10001 \
        --env-file "$ENV_DIR/common.env" --env-file "$ENV_DIR/evaluator.env" \
        $(publish 9103) ${LOCAL_EVALUATOR_ARGS:-} "$APP" evaluate >/dev/null
    # shellcheck disable=SC2046,SC2086
    docker run -d --name "$STACK-producer" --label "$LABEL" --network "$NET" --network-alias producer \
        "${HARDENING[@]}" --stop-timeout 30 \
        --env-file "$ENV_DIR/common.env" --env-file "$ENV_DIR/producer.env" \
        $(publish 9101) ${LOCAL_PRODUCER_ARGS:-} "$APP" produce >/dev/null
    if [ "$PUBLISH_PORTS" = 1 ]; then
        log "up: http://127.0.0.1:9101/status (producer), :9102 (trainer), :9103 (evaluator); make local-logs"
    else
        log "up (no ports published)"
    fi
}

down() {
    local ids
    ids=$(docker ps -aq --filter "label=$LABEL")
    if [ -n "$ids" ]; then
        # Stop gracefully first (the trainer checkpoints on SIGTERM), then remove.
        # shellcheck disable=SC2086
        docker stop -t 40 $ids >/dev/null 2>&1 || true
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null 2>&1 || true
    fi
    docker network ls -q --filter "label=$LABEL" | xargs -r docker network rm >/dev/null
    if [ "${KEEP_VOLUME:-0}" != 1 ]; then
        docker volume ls -q --filter "label=$LABEL" | xargs -r docker volume rm -f >/dev/null
    fi
    log "down: $STACK removed${KEEP_VOLUME:+ (volume kept)}"
}

logs() {
    local pids=() c
    for c in broker trainer evaluator producer; do
        docker inspect "$STACK-$c" >/dev/null 2>&1 || continue
        docker logs -f --tail "${TAIL:-20}" "$STACK-$c" 2>&1 | sed -u "s/^/[$c] /" &
        pids+=($!)
    done
    [ "${#pids[@]}" -gt 0 ] || { log "no containers of $STACK"; exit 1; }
    trap 'kill "${pids[@]}" 2>/dev/null' INT TERM EXIT
    wait
}

status() {
    docker ps -a --filter "label=$LABEL" --format 'table {{.Names}}\t{{.Status}}'
    local c port
    for c in producer:9101 trainer:9102 evaluator:9103; do
        port=${c#*:}; c=${c%%:*}
        if [ "$(docker inspect -f '{{.State.Running}}' "$STACK-$c" 2>/dev/null)" = true ]; then
            echo "--- $c /status"
            docker exec "$STACK-$c" python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/status', timeout=5).read().decode())" || true
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    logs) logs ;;
    status) status ;;
    *) echo "usage: $0 up|down|logs|status" >&2; exit 2 ;;
esac
