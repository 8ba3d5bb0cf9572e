#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through sudo, for the scripts that need
# something the machine lacks (each checks first, so this runs only when a package is
# missing). Messages go to stderr; apt-get's own output is kept quiet.
#
#   scripts/apt-install.sh WHY PACKAGE...    # WHY: what needs them, for the messages
set -euo pipefail
why=$1
shift
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$why needs $* and apt-get is not available: install them and run again" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "$why needs $*; installing them needs root (or sudo)" >&2
    exit 1
  fi
fi
echo "==> installing $* (Debian packages, for $why)" >&2
"${as_root[@]}" apt-get update -qq >&2
# --no-install-recommends keeps each install to what is asked for.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
