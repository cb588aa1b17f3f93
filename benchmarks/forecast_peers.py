"""statsforecast's AutoETS and SeasonalNaive as the peers of benchmarks/forecast.py, run by the
Python of their own virtual environment (benchmarks/peers/setup_statsforecast.sh): statsforecast
pins pandas below 3, so it never enters modelmill's. Imports statsforecast, pandas and numpy only.

    PEER/bin/python benchmarks/forecast_peers.py SPEC.json OUT_DIR

SPEC.json: ``{"data": "series.csv", "cutoffs": ["2014-12-29 23:30:00", …], "horizon": 48,
"season": 48, "frequency": "30min", "level": 80}``; ``data`` is a long CSV of ``unique_id``,
``ds``, ``y`` (a path relative to the spec's folder, or absolute). At each cut-off each model is
fitted on every series' steps up to and including the cut-off alone, and forecasts the
``horizon`` steps after it with the ``level`` % interval.

Writes ``OUT_DIR/forecasts.csv`` (``model``, ``unique_id``, ``ds``, ``cutoff``, ``forecast``,
``lower``, ``upper``) and ``OUT_DIR/seconds.json`` (``{model: [fit+forecast seconds per cut-off]}``,
plus the library versions), and prints the seconds as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def peer_models(season: int) -> dict[str, Any]:
    """The peers, by name: each fitted on its own, so that its time is its own."""
    from statsforecast.models import AutoETS, SeasonalNaive

    return {"AutoETS": AutoETS(season_length=season), "SeasonalNaive": SeasonalNaive(season_length=season)}


def forecast_at(model: Any, train: pd.DataFrame, spec: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """One model's forecasts after the last step of ``train`` (unique_id, ds, y) and its seconds."""
    from statsforecast import StatsForecast

    level = int(spec["level"])
    started = time.perf_counter()
    engine = StatsForecast(models=[model], freq=spec["frequency"], n_jobs=1)
    out = engine.forecast(df=train, h=int(spec["horizon"]), level=[level])
    seconds = time.perf_counter() - started
    out = out.reset_index() if "unique_id" not in out.columns else out
    name = repr(model)
    frame = pd.DataFrame({
        "unique_id": out["unique_id"].astype(str),
        "ds": pd.to_datetime(out["ds"]),
        "forecast": out[name].to_numpy(dtype="float64"),
        "lower": out[f"{name}-lo-{level}"].to_numpy(dtype="float64"),
        "upper": out[f"{name}-hi-{level}"].to_numpy(dtype="float64"),
    })
    return frame, seconds


def run(spec: dict[str, Any], data: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Every model at every cut-off, each on the past alone."""
    models = peer_models(int(spec["season"]))
    forecasts, seconds = [], {name: [] for name in models}
    for cutoff in pd.to_datetime(spec["cutoffs"]):
        train = data[data["ds"] <= cutoff]
        for name, model in models.items():
            frame, spent = forecast_at(model, train, spec)
            forecasts.append(frame.assign(model=name, cutoff=cutoff))
            seconds[name].append(round(spent, 4))
    columns = ["model", "unique_id", "ds", "cutoff", "forecast", "lower", "upper"]
    return pd.concat(forecasts, ignore_index=True)[columns], seconds


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    spec_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    data_path = Path(spec["data"])
    data = pd.read_csv(data_path if data_path.is_absolute() else spec_path.parent / data_path,
                       dtype={"unique_id": str}, parse_dates=["ds"])
    data = data.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    if not np.isfinite(data["y"].to_numpy(dtype="float64")).all():
        sys.exit("forecast_peers: the series hold missing or infinite values; the benchmark writes complete ones")
    forecasts, seconds = run(spec, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    forecasts.to_csv(out_dir / "forecasts.csv", index=False)
    import statsforecast

    versions = {"statsforecast": statsforecast.__version__, "pandas": pd.__version__, "numpy": np.__version__}
    (out_dir / "seconds.json").write_text(json.dumps({"seconds": seconds, "versions": versions}))
    print(json.dumps({name: round(sum(values), 3) for name, values in seconds.items()}))


if __name__ == "__main__":
    main()
