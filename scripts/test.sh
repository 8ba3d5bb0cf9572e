#!/usr/bin/env bash
# Every check CI runs, in the order a failure is cheapest to see: formatting, lints, tests.
# Needs the Rust toolchain (protobuf is compiled by protox, no protoc); the local Apache
# Kafka comes from Maven Central (scripts/kafka.sh installs Java and Maven from Debian if
# they are missing); Chromium comes from Debian and playwright-core from npm
# (scripts/browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests run against a local Apache Kafka that they start themselves (one per
# test binary); fetch it first (once, about a minute) so that is not hidden inside a test.
scripts/kafka.sh --install
# The console's browser test (tests/tests/console.rs) drives Debian's headless Chromium with
# playwright-core from tests/browser/package-lock.json: install both now if missing (cold
# about 25 s, warm under 1 s on the project machine) rather than inside the test.
scripts/browser.sh --install
# The client examples (examples/: Python, Java, Go) are run by tests/tests/examples.rs; their
# venv, Maven build and Go build are made here, once, not inside the test (a no-op when warm).
scripts/examples.sh --install

# OpenSSL's headers and pkg-config (librdkafka links the system's OpenSSL): apt-get, if missing.
scripts/build-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every fuzz target for a bounded time (10 s each here; FUZZ_SECONDS sets it, and
# scripts/fuzz.sh alone runs 20 s); fails on a crash. fuzz/ is a workspace of its own that
# clippy does not build, so it goes before the long tests: a fuzz target that no longer
# compiles fails in minutes, not after the whole run.
FUZZ_SECONDS=${FUZZ_SECONDS:-10} scripts/fuzz.sh
cargo test --workspace --locked
# Every contender of the side-by-side benchmark (issue 15: the bare consumer, the counter,
# the Kafka Streams and Flink peers, built with Maven) on ~18 000 events; fails if one misses
# a record. Uses the debug binary the tests just built.
scripts/bench-peers.sh --smoke
# The monitoring files of deploy/: promtool check config/rules and the rules' unit tests
# (installs Debian's prometheus package for promtool if it is missing).
scripts/deploy-check.sh
