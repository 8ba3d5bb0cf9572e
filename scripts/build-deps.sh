#!/usr/bin/env bash
# Installs what building trendwatch needs beyond the Rust toolchain, when it is missing:
# OpenSSL's headers (Debian's libssl-dev) and pkg-config, which rdkafka's `ssl` feature uses
# to link librdkafka against the system's OpenSSL instead of compiling OpenSSL from source
# (which was the slowest unit of a cold build, ahead of librdkafka itself). A no-op when
# both are there. librdkafka's own ./configure && make needs a C compiler and make: they
# are installed too if missing (Debian's build-essential).
#
#   scripts/build-deps.sh
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! pkg-config --exists openssl 2>/dev/null; then
  missing+=(libssl-dev)
fi
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v make >/dev/null 2>&1 || missing+=(make)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "building needs ${missing[*]} and apt-get is not available: install them and run again" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "building needs ${missing[*]}; installing them needs root (or sudo)" >&2
    exit 1
  fi
fi
echo "==> installing ${missing[*]} (Debian packages, for the build)" >&2
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
