#!/bin/sh
# Remove what a runtime never loads from the image's virtualenv (measured in docs/containers.md).
# Metadata (dist-info) stays, so `pip check` and `pip list` still see a consistent install.
set -eu
VENV=${1:?usage: prune-venv.sh VENV}
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cd "$SITE"
before=$(du -sm . | cut -f1)
# C/C++ headers for building custom ops (174 MB); nothing imports them.
rm -rf tensorflow/include
# libclang: a build-time dependency of tensorflow (op code generation); not loaded at runtime.
rm -f clang/native/libclang.so
# Test suites shipped inside packages (the packages' *testing* helpers are separate modules).
find . -depth -type d \( -name tests -o -name test \) \
    \( -path './scipy/*' -o -path './numpy/*' -o -path './sklearn/*' -o -path './matplotlib/*' \
       -o -path './pandas/*' -o -path './fontTools/*' -o -path './h5py/*' -o -path './kiwisolver/*' \
       -o -path './contourpy/*' -o -path './pydantic/*' -o -path './google/*' -o -path './grpc/*' \) \
    -exec rm -rf {} +
after=$(du -sm . | cut -f1)
echo "prune-venv: site-packages ${before} MB -> ${after} MB"
