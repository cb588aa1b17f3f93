#!/usr/bin/env bash
# System programs the test suite drives as real parts (a headless browser for the API docs
# page, a PostgreSQL server), installed where missing when this runs as root with apt-get (as CI does), so those
# tests run everywhere instead of skipping. Elsewhere it says what is missing and the tests
# that need it skip with that reason.
set -euo pipefail
missing=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)  # a real server the SQL-source tests start in a temporary folder
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} for the tests (apt-get) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "warning: ${missing[*]} not installed and this is not root with apt-get; the tests that need" \
       "${missing[*]} will skip (install: apt-get install ${missing[*]})" >&2
fi
