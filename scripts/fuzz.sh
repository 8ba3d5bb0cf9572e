#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (FUZZ_SECONDS each, default 20) and
# fails if any of them finds a crash. Prints, per target, libFuzzer's final "Done N runs"
# line. The corpus grows in fuzz/corpus/<target> and crash inputs land in
# fuzz/artifacts/<target>/ (both gitignored).
#
#   scripts/fuzz.sh                   # 20 s per target
#   FUZZ_SECONDS=60 scripts/fuzz.sh   # longer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz 0.13.2 (about a minute the first time)" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked >&2
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sancov); on a stable
# toolchain RUSTC_BOOTSTRAP lets rustc accept them.
export RUSTC_BOOTSTRAP=1

# fuzz/ is its own workspace and its lock file is gitignored: start it from the main
# workspace's, so the fuzzed code builds against the dependency versions the tests use.
if [ ! -f fuzz/Cargo.lock ]; then
  cp Cargo.lock fuzz/Cargo.lock
fi

# Build every target first, so the build (minutes from cold) is not taken from the fuzzing
# time and a build error stops here.
cargo fuzz build

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds}s" >&2
  log=$logs/$target.log
  # -timeout: an input that runs longer than 10 s counts as a failure (a hang) instead
  # of holding CI for libFuzzer's default 20 minutes.
  if cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    # The crash report (panic message, stack, the input's path and base64), without
    # libFuzzer's progress lines.
    grep -avE '^#[0-9]+[[:space:]]' "$log" >&2 || true
  fi
  # libFuzzer's last lines: "#N DONE cov: ... ft: ... corp: ..." and "Done N runs in S second(s)".
  cov=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//' || true)
  done_line=$(grep -aE '^Done [0-9]+ runs' "$log" | tail -n 1 || true)
  summary+=("$target: $status; ${done_line:-no final Done line (stopped early)}${cov:+; $cov}")
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
