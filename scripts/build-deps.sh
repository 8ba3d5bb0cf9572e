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
"$(dirname "$0")/apt-install.sh" "the build" "${missing[@]}"
