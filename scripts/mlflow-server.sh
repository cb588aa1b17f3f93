#!/usr/bin/env bash
# The MLflow tracking server the tests start on loopback, in a virtual environment of its own:
# the full `mlflow` package (the server) would change pyarrow and other pins of modelmill's
# environment, which needs only the client (mlflow-skinny, the tracking extra).
#
#   bash scripts/mlflow-server.sh        # creates or completes the venv; prints its python
#
# The venv lives at ${MODELMILL_CACHE:-$HOME/.cache/modelmill}/mlflow-server-VERSION and is
# cached between test runs on one machine: running this again is cheap.
set -euo pipefail

version="${MLFLOW_SERVER_VERSION:-3.17.2}"
venv="${MODELMILL_CACHE:-$HOME/.cache/modelmill}/mlflow-server-$version"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

mkdir -p "$(dirname "$venv")"
# two test runs at once on one machine: the second waits, then finds the venv made
exec 9>"$venv.lock"
flock 9
if [ -f "$venv/.complete" ] && "$venv/bin/python" -c "import mlflow.server" 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
echo "installing the MLflow $version tracking server for the tests into $venv ..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install --quiet "mlflow==$version"
"$venv/bin/python" -c "import mlflow.server"
touch "$venv/.complete"
echo "$venv/bin/python"
