#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io from Debian and start dockerd in the
# background when `docker info` fails. Idempotent; needs root (CI runs as root).
set -euo pipefail

LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
WAIT=${DOCKERD_WAIT_SECONDS:-60}

if docker info >/dev/null 2>&1; then
    echo "docker-engine: engine already answers"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "docker-engine: no engine answers and this is not root; start dockerd yourself" >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing docker.io from Debian"
    "$(dirname "$0")/../mk/apt-install.sh" docker.io
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "docker-engine: starting dockerd (log: $LOG)"
    # setsid: dockerd outlives the make/CI shell that started it
    setsid dockerd >"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 "$WAIT"); do
    if docker info >/dev/null 2>&1; then
        echo "docker-engine: engine is up ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 1
done
echo "docker-engine: dockerd did not answer within ${WAIT}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
