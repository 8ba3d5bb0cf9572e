#!/usr/bin/env bash
# Every check CI runs, in the order a failure is cheapest to see: formatting, lints, tests.
# Needs only the Rust toolchain (protobuf is compiled by protox, no protoc).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
