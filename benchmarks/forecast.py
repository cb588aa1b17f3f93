"""Forecasting: our default (`model: auto`) against statsforecast's AutoETS and SeasonalNaive, on
the worked examples' data sets, in the same rolling-origin backtest.

    bash benchmarks/peers/setup_statsforecast.sh              # the peer's own venv (once)
    nice -n 10 .venv/bin/python benchmarks/forecast.py        # the three data sets
    .venv/bin/python benchmarks/forecast.py --quick           # a smoke run: 1 cut-off, recent steps only
    .venv/bin/python benchmarks/forecast.py bikeshare --model ets --no-peers

Each data set is read as its example says (examples/forecast/NAME.yaml); our backtest is
modelmill.forecasting.backtest.run_backtest (each cut-off fits a fresh forecaster on the steps up
to it alone). The peers run in their own virtual environment (statsforecast pins pandas < 3),
through benchmarks/forecast_peers.py, on exactly the same series (unique_id, ds, y: they use no
covariates) and the same cut-offs. Every forecast is scored by modelmill.forecasting.metrics with
the same scales (per series and cut-off, the seasonal-naive error of the steps before the cut-off).

The backtest is longer than the examples' default of 3 cut-offs (CUTOFFS below), so that the
pooled 80% coverage counts at least 1,000 forecast points. Seconds: fit + forecast, summed over
the cut-offs, for ours and for each peer (the peers' process start and imports not counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelmill.config.forecast import ForecastConfig
from modelmill.forecasting.panel import Panel

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "forecast"
DATASETS = ("elecdemand", "aus_accommodation", "bikeshare")
# Cut-offs per data set: 7 days of daily origins, 7 of the 8 two-year origins that 74 quarters allow,
# 14 days of daily origins: 336 + 448 + 336 = 1,120 forecast points.
CUTOFFS = {"elecdemand": 7, "aus_accommodation": 7, "bikeshare": 14}
PEERS = ("AutoETS", "SeasonalNaive")
QUICK_SEASONS = 10  # --quick: each series' latest 10 seasons (at least 4 horizons) and one cut-off


def peer_python() -> Path:
    """The statsforecast venv's Python (benchmarks/peers/setup_statsforecast.sh makes it)."""
    peers = os.environ.get("MODELMILL_PEERS")
    base = Path(peers).expanduser() if peers else Path.home() / ".cache" / "modelmill" / "peers"
    return base / "statsforecast" / "bin" / "python"


@dataclass
class Arm:
    """One forecaster's backtest on one data set."""

    scored: pd.DataFrame  # unique_id, ds, cutoff, forecast, lower, upper, actual
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    chosen: list[str] = field(default_factory=list)  # ours: auto's members at each cut-off, heaviest first ("ets+gbdt+…")
    described: list[dict[str, Any]] = field(default_factory=list)  # ours: what each fit chose, in full


@dataclass
class Case:
    """One data set: its config, its series, the cut-offs and the scales."""

    name: str
    config: ForecastConfig
    panel: Panel
    cutoffs: list[pd.Timestamp]
    scales: pd.Series


def load(name: str, *, cutoffs: int, model: str | None, quick: bool) -> Case:
    """The data set read as its example config says, with the benchmark's backtest."""
    from modelmill.data.sources import read_table
    from modelmill.forecasting.backtest import cutoff_times
    from modelmill.forecasting.panel import check_history, read_panel

    path = EXAMPLES / f"{name}.yaml"
    config = example_config(path, cutoffs=cutoffs, model=model)
    panel, _ = read_panel(read_table(config.data, base_dir=path.parent), config, source=config.data.source)
    if quick:
        panel = panel.tail(max(QUICK_SEASONS * panel.season, 4 * config.series.horizon))
    check_history(panel, config.series.horizon, source=config.data.source)
    times = cutoff_times(panel, config)
    return Case(name, config, panel, times, scales_for(panel, times))


def example_config(path: Path, *, cutoffs: int, model: str | None) -> ForecastConfig:
    """The example's config with the benchmark's cut-offs (and another model type, if asked)."""
    from modelmill.config.io import load_task_config, parse_task_config

    raw = load_task_config(path).model_dump(mode="json", exclude_unset=True)
    raw["backtest"] = {**raw.get("backtest", {}), "cutoffs": cutoffs}
    if model:
        raw["model"] = {"type": model}
    config = parse_task_config(raw, origin=str(path))
    if not isinstance(config, ForecastConfig):
        raise SystemExit(f"{path}: not a task: forecast config")
    return config


def scales_for(panel: Panel, cutoffs: list[pd.Timestamp]) -> pd.Series:
    """MASE's scale per (series, cut-off): the seasonal-naive error of the steps up to the cut-off,
    as the backtest computes it."""
    from modelmill.config.forecast import SERIES_ID
    from modelmill.forecasting.metrics import CUTOFF, naive_scales

    parts = []
    for cutoff in cutoffs:
        scale = naive_scales(panel.up_to(cutoff).frame, panel.season)
        index = pd.MultiIndex.from_arrays([scale.index, [cutoff] * len(scale)], names=[SERIES_ID, CUTOFF])
        parts.append(pd.Series(scale.to_numpy(), index=index))
    return pd.concat(parts)


def run_ours(case: Case, run_dir: Path | None = None) -> Arm:
    """Our backtest, as `modelmill train` runs it; with ``run_dir``, the cut-offs finished there
    before are reused (their seconds as measured then) and an unfinished fit resumes."""
    import modelmill.forecasting.registered  # noqa: F401  (every model type registered)
    from modelmill.forecasting.backtest import run_backtest

    result = run_backtest(case.config, case.panel, run_dir=run_dir, resume=run_dir is not None)
    seconds = sum(float(c["seconds"]) for c in result.per_cutoff)
    described = [dict(c.get("model", {})) for c in result.per_cutoff]
    chosen = [str(d.get("chosen", case.config.model.type)) for d in described]
    return Arm(result.scored, seconds, chosen=chosen, described=described)


def run_peers(case: Case, python: Path, workdir: Path) -> dict[str, Arm]:
    """AutoETS and SeasonalNaive in their own venv, on the same series and cut-offs."""
    from modelmill.config.forecast import SERIES_ID, TIME, VALUE
    from modelmill.forecasting.metrics import ACTUAL

    folder = workdir / case.name
    folder.mkdir(parents=True, exist_ok=True)
    case.panel.frame[[SERIES_ID, TIME, VALUE]].to_csv(folder / "series.csv", index=False)
    spec = {"data": "series.csv", "cutoffs": [str(c) for c in case.cutoffs], "horizon": case.config.series.horizon,
            "season": case.panel.season, "frequency": case.panel.frequency,
            "level": round(100 * case.config.backtest.interval)}
    (folder / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([str(python), str(ROOT / "benchmarks" / "forecast_peers.py"), str(folder / "spec.json"),
                           str(folder / "out")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the statsforecast peer failed on {case.name} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    forecasts = pd.read_csv(folder / "out" / "forecasts.csv", dtype={SERIES_ID: str}, parse_dates=[TIME, "cutoff"])
    seconds = json.loads((folder / "out" / "seconds.json").read_text())["seconds"]
    actual = case.panel.frame[[SERIES_ID, TIME, VALUE]].rename(columns={VALUE: ACTUAL})
    arms = {}
    for model in PEERS:
        rows = forecasts[forecasts["model"] == model].drop(columns="model")
        scored = rows.merge(actual, on=[SERIES_ID, TIME], how="left")
        late = scored[ACTUAL].isna() & (scored[TIME] <= case.panel.frame[TIME].max())
        if late.any():  # a step inside the data without an actual value: the grids differ
            raise RuntimeError(f"{model} forecast steps that are not in the series of {case.name}: "
                               f"{scored.loc[late, TIME].head(3).tolist()}")
        arms[model] = Arm(scored[scored[ACTUAL].notna()].reset_index(drop=True), float(sum(seconds[model])))
    return arms


def score(case: Case, arm: Arm) -> Arm:
    from modelmill.forecasting.metrics import accuracy

    arm.metrics = accuracy(arm.scored, case.scales)
    return arm


def pooled_coverage(arms: list[Arm]) -> tuple[float, int]:
    """The share of actual values inside the interval, over every forecast point of ``arms``."""
    from modelmill.forecasting.base import LOWER, UPPER
    from modelmill.forecasting.metrics import ACTUAL

    scored = pd.concat([a.scored for a in arms], ignore_index=True)
    inside = (scored[ACTUAL] >= scored[LOWER]) & (scored[ACTUAL] <= scored[UPPER])
    return float(inside.mean()), len(scored)


def table(results: dict[str, dict[str, Arm]]) -> str:
    """The markdown table: one row per data set and forecaster."""
    lines = ["| data set | forecaster | MASE | sMAPE % | WAPE | 80% coverage | points | seconds | MASE / best peer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, arms in results.items():
        peers = [arms[p].metrics["mase"] for p in PEERS if p in arms]
        best = min(peers) if peers else float("nan")
        for who, arm in arms.items():
            m = arm.metrics
            ratio = f"{m['mase'] / best:.3f}" if peers else ""
            lines.append(f"| {name} | {who} | {m['mase']:.3f} | {m['smape']:.2f} | {m['wape']:.4f} | "
                         f"{m['coverage']:.3f} | {int(m['points'])} | {arm.seconds:.2f} | {ratio} |")
    for who in ["ours", *PEERS]:
        arms_of = [arms[who] for arms in results.values() if who in arms]
        if arms_of:
            coverage, points = pooled_coverage(arms_of)
            lines.append(f"| pooled | {who} | | | | {coverage:.3f} | {points} | "
                         f"{sum(a.seconds for a in arms_of):.2f} | |")
    return "\n".join(lines)


def write(results: dict[str, dict[str, Arm]], out: Path) -> str:
    """The markdown table to ``out`` and every figure (and what ``auto`` chose) as JSON beside it."""
    markdown = table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n")
    figures = {name: {who: {**a.metrics, "seconds": a.seconds, "chosen": a.chosen, "described": a.described}
                      for who, a in arms.items()}
               for name, arms in results.items()}
    out.with_suffix(".json").write_text(json.dumps(figures, indent=1, default=str))
    return markdown


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"of {', '.join(DATASETS)}, in the order "
                        "run (default: all)")
    parser.add_argument("--quick", action="store_true", help="1 cut-off, each series' latest "
                        f"{QUICK_SEASONS} seasons: a smoke run")
    parser.add_argument("--cutoffs", type=int, help="cut-offs for every data set (default: CUTOFFS, 1 with --quick)")
    parser.add_argument("--model", help="our model type instead of the examples' (default: auto)")
    parser.add_argument("--peer-python", type=Path, default=peer_python(), help="the statsforecast venv's Python")
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--resume", action="store_true", help="keep our finished cut-offs in OUT's folder "
                        "(forecast/runs/…, one folder per data set, model, cut-offs and --quick) and reuse those of "
                        "an earlier run with the same settings; delete that folder after changing the code")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".cache" / "forecast.md",
                        help="where the markdown table (and a JSON beside it) is written, after each data set")
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; valid: {', '.join(DATASETS)}")
    if not args.no_peers and not args.peer_python.is_file():
        parser.error(f"no statsforecast venv at {args.peer_python}. Fix: bash benchmarks/peers/setup_statsforecast.sh "
                     "(or --peer-python PATH, or --no-peers)")
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, Arm]]:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the backtest's cut-off lines
    workdir = args.out.parent / "forecast"
    results: dict[str, dict[str, Arm]] = {}
    started = time.perf_counter()
    for name in args.datasets or DATASETS:
        cutoffs = args.cutoffs or (1 if args.quick else CUTOFFS[name])
        case = load(name, cutoffs=cutoffs, model=args.model, quick=args.quick)
        run_dir = workdir / "runs" / f"{name}-{args.model or 'default'}-{cutoffs}{'-quick' if args.quick else ''}"
        arms = {"ours": score(case, run_ours(case, run_dir if args.resume else None))}
        if not args.no_peers:
            arms.update({k: score(case, v) for k, v in run_peers(case, args.peer_python, workdir).items()})
        results[name] = arms
        print(f"{name}: {len(case.cutoffs)} cut-offs, " + ", ".join(
            f"{who} MASE {a.metrics['mase']:.3f} ({a.seconds:.1f} s)" for who, a in arms.items())
            + f"; ours chose {arms['ours'].chosen}", flush=True)
        markdown = write(results, args.out)
    print(markdown)
    print(f"total {time.perf_counter() - started:.0f} s; written to {args.out}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
