#!/usr/bin/env bash
# Runs a browser check of tests/browser/ (Node, Playwright's playwright-core) in Debian's
# headless Chromium, installing what is missing first.
#
#   scripts/browser.sh --install          # only install: Chromium (apt-get) and npm ci
#   scripts/browser.sh SCRIPT [ARGS...]   # node tests/browser/SCRIPT ARGS (installs first)
#
# Chromium comes from Debian's `chromium` package, installed with apt-get only when the
# binary is missing (with sudo when not run as root). playwright-core comes from
# tests/browser/package-lock.json through `npm ci`, re-run only when the lock file changed
# since the last install. Playwright's own browser download (`npx playwright install`) is
# never used: the scripts launch $CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$here/../tests/browser
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

install() {
  local missing=()
  [ -x "$CHROMIUM" ] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    "$here/apt-install.sh" "the browser test" "${missing[@]}"
  fi
  # npm ci writes node_modules/.package-lock.json; a newer lock file means a new install.
  local stamp=$dir/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "==> npm ci in tests/browser" >&2
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  fi
}

case "${1:-}" in
  --install)
    install
    echo "==> $("$CHROMIUM" --version 2>/dev/null | head -n 1); playwright-core $(cd "$dir" && node -p 'require("playwright-core/package.json").version')" >&2
    ;;
  "" | -h | --help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "${1:-}" ]
    ;;
  *)
    install
    script=$1
    shift
    exec node "$dir/$script" "$@"
    ;;
esac
