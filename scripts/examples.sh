#!/usr/bin/env bash
# The client examples of examples/ (Python, Java, Go): installs what each needs, runs one
# of their programs, or runs the smoke of each against a running counter.
#
#   scripts/examples.sh --install [LANG...]        # fetch and build (idempotent; all by default)
#   scripts/examples.sh LANG produce|alerts ARGS... # run one program (installs it if missing)
#   scripts/examples.sh --smoke BOOTSTRAP EVENTS_TOPIC ALERTS_TOPIC [LANG...]
#
# LANG is python, java or go. ARGS are the program's own (examples/README.md), the same in
# every language: produce --bootstrap B --topic T [--video V] [--likes N];
# alerts --bootstrap B --topic T [--video V] [--group G] [--timeout SECONDS].
# --smoke needs a counter reading EVENTS_TOPIC with counter.input_format = "json" and writing
# ALERTS_TOPIC with counter.output_format = "json"; for each language it produces the example
# workload (on a video of its own) and reads back its VIRAL_VELOCITY alert, and exits non-zero
# naming every language whose smoke failed. On shared topics a later language's history is
# behind the watermark an earlier one left, so the counter counts it late (its burst still
# fires); the end-to-end test tests/tests/examples.rs gives each language fresh topics and
# checks the counter's counts too.
#
# Where things go: the Python venv (confluent-kafka, pinned in examples/python/
# requirements.txt) and the Go binaries (franz-go, pinned in examples/go/go.sum) under
# ${XDG_CACHE_HOME:-~/.cache}/trendwatch/examples/, one folder per version of their inputs;
# the Java jar (kafka-clients, pinned in examples/java/pom.xml) in examples/java/target/, as
# Maven does (offline first, so a warm ~/.m2 needs no network). Needs python3 (with venv), Java
# 17 and Maven (installed from Debian if missing, as scripts/kafka.sh does) and Go >= the
# go.mod's version (not in Debian's archive at that version: the machine's Go).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
examples=$(cd "$here/../examples" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/trendwatch/examples
languages=(python java go)

say() { echo "examples: $*" >&2; }
die() { say "error: $*"; exit 1; }

# A short checksum of the contents of the files PATTERN... match under examples/ (their
# paths included). The patterns are expanded there, so callers quote them.
sum_of() {
  # shellcheck disable=SC2048,SC2086
  (cd "$examples" && set -o pipefail && cksum $* | cksum | cut -d' ' -f1)
}

debian() { # PACKAGE... installed from Debian's archive
  "$here/apt-install.sh" "the client examples" "$@"
}

python_venv() { echo "$cache/python-$(sum_of python/requirements.txt)"; }
install_python() {
  local venv
  venv=$(python_venv)
  [ -f "$venv/.complete" ] && return 0
  command -v python3 >/dev/null 2>&1 || debian python3 python3-venv
  python3 -c 'import ensurepip, venv' 2>/dev/null || debian python3-venv
  say "python: a venv with examples/python/requirements.txt in $venv"
  rm -rf "$venv.partial" && mkdir -p "$cache"
  python3 -m venv "$venv.partial"
  "$venv.partial/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r "$examples/python/requirements.txt" >&2
  touch "$venv.partial/.complete"
  rm -rf "$venv" && mv "$venv.partial" "$venv"
}

java_jar=$examples/java/target/trendwatch-examples.jar
install_java() {
  local project=$examples/java
  if [ -f "$java_jar" ] && [ -z "$(find "$project/pom.xml" "$project/src" -newer "$java_jar" -print -quit)" ]; then
    return 0
  fi
  local missing=()
  command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] || debian "${missing[@]}"
  say "java: building $java_jar (Maven)"
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/examples-mvn.XXXXXX")
  mvn -q -B -o -f "$project/pom.xml" package -DskipTests >"$log" 2>&1 \
    || mvn -q -B -f "$project/pom.xml" package -DskipTests >"$log" 2>&1 \
    || { cat "$log" >&2; rm -f "$log"; die "java: the Maven build failed"; }
  rm -f "$log"
}

go_bin() { echo "$cache/go-$(sum_of go/go.mod go/go.sum 'go/*/*.go')"; }
install_go() {
  local bin want have
  bin=$(go_bin)
  [ -f "$bin/.complete" ] && return 0
  command -v go >/dev/null 2>&1 || die "go: no Go toolchain on PATH (examples/go/go.mod needs Go $(sed -n 's/^go //p' "$examples/go/go.mod") or later)"
  want=$(sed -n 's/^go //p' "$examples/go/go.mod")
  have=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" = "$want" ] \
    || die "go: Go $have is older than the $want examples/go/go.mod needs"
  say "go: building produce and alerts into $bin"
  rm -rf "$bin.partial" && mkdir -p "$bin.partial"
  # go.sum pins every module; a build must not change it (or fetch another toolchain).
  # go vet first: an example is code people copy.
  (cd "$examples/go" && export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    && go vet ./... && go build -trimpath -o "$bin.partial/" ./produce ./alerts) >&2 \
    || die "go: go vet or the build failed"
  touch "$bin.partial/.complete"
  rm -rf "$bin" && mv "$bin.partial" "$bin"
}

install() { # LANG
  case "$1" in
    python) install_python ;;
    java) install_java ;;
    go) install_go ;;
    *) die "unknown language $1 (python, java or go)" ;;
  esac
}

run() { # LANG PROGRAM ARGS...
  local lang=$1 program=$2
  shift 2
  case "$program" in produce|alerts) ;; *) die "unknown program $program (produce or alerts)" ;; esac
  install "$lang"
  case "$lang" in
    python) exec "$(python_venv)/bin/python" "$examples/python/$program.py" "$@" ;;
    java)
      local class=Produce
      [ "$program" = alerts ] && class=Alerts
      # A short-lived client starts faster without the optimising compiler.
      exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$java_jar" "dev.trendwatch.examples.$class" "$@" ;;
    go) exec "$(go_bin)/$program" "$@" ;;
  esac
}

smoke() { # BOOTSTRAP EVENTS ALERTS [LANG...]
  [ $# -ge 3 ] || die "usage: $0 --smoke BOOTSTRAP EVENTS_TOPIC ALERTS_TOPIC [LANG...]"
  local bootstrap=$1 events=$2 alerts=$3 failed=() lang started out
  shift 3
  [ $# -gt 0 ] || set -- "${languages[@]}"
  for lang in "$@"; do install "$lang"; done
  for lang in "$@"; do
    started=$(date +%s.%N)
    if "$0" "$lang" produce --bootstrap "$bootstrap" --topic "$events" --video "v-smoke-$lang" \
       && out=$("$0" "$lang" alerts --bootstrap "$bootstrap" --topic "$alerts" --video "v-smoke-$lang" --timeout 60) \
       && [[ $out == *'"type":"VIRAL_VELOCITY"'* ]]; then
      say "$lang: VIRAL_VELOCITY for v-smoke-$lang read back ($(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}') s)"
    else
      say "$lang: FAILED"
      failed+=("$lang")
    fi
  done
  [ ${#failed[@]} -eq 0 ] || die "smoke failed for: ${failed[*]}"
}

case "${1:-}" in
  --install)
    shift
    [ $# -gt 0 ] || set -- "${languages[@]}"
    for lang in "$@"; do install "$lang"; done ;;
  --smoke) shift; smoke "$@" ;;
  python|java|go) [ $# -ge 2 ] || die "usage: $0 $1 produce|alerts ARGS..."; run "$@" ;;
  -h|--help) sed -n '2,26p' "$0" ;;
  *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
