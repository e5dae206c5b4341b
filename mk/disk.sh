#!/usr/bin/env bash
# One line: the free space on the file system of the current directory and of Docker's data root.
# CI prints it between the steps of `make test`, so a run that fills its disk shows which step did.
set -euo pipefail
free() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { printf "%.1f GB free on %s", $4 / 1048576, $6 }'; }
line="checkout: $(free .)"
root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)
[ -n "$root" ] && line="$line; docker: $(free "$root")"
echo "$line"
