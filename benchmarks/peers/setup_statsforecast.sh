#!/usr/bin/env bash
# The statsforecast peer of benchmarks/forecast.py, in a virtual environment of its own:
# statsforecast pins pandas < 3 and pulls numba, so it never enters modelmill's environment.
#
#   bash benchmarks/peers/setup_statsforecast.sh            # creates or completes the venv
#   STATSFORECAST_VERSION=2.0.1 bash benchmarks/peers/setup_statsforecast.sh
#
# The venv lives at ${MODELMILL_PEERS:-$HOME/.cache/modelmill/peers}/statsforecast. Running it
# again is cheap: an environment that already imports statsforecast is left as it is.
set -euo pipefail

peers="${MODELMILL_PEERS:-$HOME/.cache/modelmill/peers}"
venv="$peers/statsforecast"
python="${PYTHON:-python3}"
spec="statsforecast${STATSFORECAST_VERSION:+==$STATSFORECAST_VERSION}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import statsforecast, pandas, numpy" 2>/dev/null; then
    echo "statsforecast $("$venv/bin/python" -c 'import statsforecast; print(statsforecast.__version__)') is ready: $venv/bin/python"
    exit 0
fi

mkdir -p "$peers"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec"
"$venv/bin/python" -c "import statsforecast; print('statsforecast', statsforecast.__version__, 'is ready:')"
echo "$venv/bin/python"
