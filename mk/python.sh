#!/usr/bin/env bash
# Prints the path of a Python interpreter whose version is one of the arguments (e.g. 3.11 3.12 3.13):
# python3 first, then pythonX.Y on PATH, then pyenv's installs. Prints nothing, and says why on stderr,
# when none is found.
set -u
wanted=("$@")
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
fits() { local v; v=$(version_of "$1") || return 1; for w in "${wanted[@]}"; do [ "$v" = "$w" ] && return 0; done; return 1; }
candidates=(python3)
for w in "${wanted[@]}"; do candidates+=("python$w"); done
for c in "${candidates[@]}"; do
  path=$(command -v "$c" 2>/dev/null) || continue
  if fits "$path"; then command -v "$c"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
  for w in "${wanted[@]}"; do
    prefix=$(pyenv prefix "$w" 2>/dev/null | head -n1) || continue
    if [ -n "$prefix" ] && fits "$prefix/bin/python$w"; then echo "$prefix/bin/python$w"; exit 0; fi
  done
fi
have=$(version_of python3 || echo none)
echo "need Python ${wanted[*]} (python3 here is $have): install one, or set PYTHON=/path/to/python" >&2
