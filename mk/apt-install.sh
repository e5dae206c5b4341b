#!/usr/bin/env bash
# apt-get install PACKAGE... (Debian, root), recovering first from an interrupted dpkg run
# (a run killed mid-install leaves "dpkg was interrupted" and every later install fails).
# Waits for another apt/dpkg holding the lock instead of failing at once.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# needrestart (a hook of apt on Debian) would otherwise scan processes and print noise after each install.
export NEEDRESTART_SUSPEND=1
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-install: needs root and apt-get to install $*" >&2
    exit 1
fi
LOCK=(-o DPkg::Lock::Timeout=300)
# Finish what an interrupted dpkg left half-configured (a no-op when nothing was).
dpkg --configure -a
apt-get "${LOCK[@]}" install -y -qq -f >/dev/null
apt-get "${LOCK[@]}" update -qq
apt-get "${LOCK[@]}" install -y -qq "$@" >/dev/null
