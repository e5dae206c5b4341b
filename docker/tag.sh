#!/usr/bin/env bash
# Print the image tag: <version from pyproject.toml>-<short git revision>, e.g. 0.1.0-bdef8e6.
# IMAGE_TAG, when set, wins (for CI systems that tag differently).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${IMAGE_TAG:-}" ]; then echo "$IMAGE_TAG"; exit 0; fi
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
echo "${version}-${rev}"
