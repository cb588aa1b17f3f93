"""Drift alarms on data nobody tuned them for: false alarms on unshifted windows and the
smallest shift detected, ours (`modelmill monitor`'s defaults) against per-column
significance tests at p < 0.05 (Evidently's default method for windows of up to 1,000 rows:
a two-sample Kolmogorov-Smirnov test for numbers, a chi-square test for categories),
computed with scipy on the same windows in the same run.

    .venv/bin/python benchmarks/drift_alarms.py [--windows 300] [--per-shift 60]

For adult (windows of 1,000 rows) and German credit (windows of 200 rows): the example
config with gradient-boosted trees is trained; windows are drawn with replacement from its
test split. A window "raises an alarm" when any column's drift or data-quality alarm
fires (ours) or any column's test rejects (the tests). Shifts: rows with age ≥ 50 made k
times as likely (reported as the age mean's move in training standard deviations), and the
share of one category of 10–25% multiplied by m; a shift counts as detected in a window
when the window alarms and the shifted column ranks first. The smallest shift detected is
the smallest tried whose detection rate is at least 90%.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from modelmill.api import Pipeline
from modelmill.data.datasets import fetch_dataset
from modelmill.monitoring.watch import Monitor, Reference
from modelmill.predictor import prediction_frame

ROOT = Path(__file__).resolve().parents[1]
AGE_FACTORS = (1.25, 1.5, 2.0, 3.0, 4.0)
SHARE_FACTORS = (1.25, 1.5, 1.75, 2.0)


@dataclass
class Case:
    name: str
    config: Path
    window: int
    age: str
    category: str


CASES = [Case("adult", ROOT / "examples/adult/adult.yaml", 1000, "age", "occupation"),
         Case("german_credit", ROOT / "examples/german_credit/german_credit.yaml", 200, "age_in_years", "purpose")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=300, help="unshifted windows per data set")
    parser.add_argument("--per-shift", type=int, default=60, help="windows per shift strength")
    args = parser.parse_args()
    print(f"{date.today()} · {platform.processor() or platform.machine()} · {args.windows} unshifted windows, "
          f"{args.per_shift} per shift")
    for case in CASES:
        run(case, args.windows, args.per_shift)


def run(case: Case, count: int, per_shift: int) -> None:
    config = yaml.safe_load(case.config.read_text())
    config.update(model={"type": "gbdt"}, training={"progress": False})
    pipeline = Pipeline(config).fit()
    full = pd.read_csv(fetch_dataset(case.name))
    assert pipeline.split_ is not None
    tagged = pipeline.split_.test_split(full.assign(_row=np.arange(len(full))))  # where each test row came from
    test = tagged.drop(columns="_row")
    learned = full.drop(index=tagged["_row"].to_numpy())  # the rest: the rows the model learned from
    reference = Reference(Path("."), "1", pipeline.parts, pipeline.profile_, pipeline.metrics_, {})
    monitor = Monitor(reference, window=case.window)
    target = pipeline.parts.target.name
    logged = pd.concat([test, prediction_frame(pipeline.parts.predict(test), target, test.index)], axis=1)
    logged[target] = None  # no labels: drift alone
    logged["logged_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    logged["version"] = "1"
    columns = [f.name for f in pipeline.parts.features]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    ours, theirs = [], []
    for _ in range(count):
        rows = rng.integers(0, len(test), case.window)
        ours.append(bool(monitor.judge(0, logged.iloc[rows]).alarms))
        theirs.append(bool(tested(learned, test.iloc[rows], columns)))
    seconds = (time.perf_counter() - started) / count
    print(f"\n## {case.name}: windows of {case.window} rows from the test split ({len(test)} rows)")
    print(f"false alarms: ours {np.mean(ours):.1%} of windows, tests at p < 0.05 {np.mean(theirs):.1%}; "
          f"{seconds * 1000:.0f} ms a window (both)")
    # context: windows from the rows the model learned from, the reference's own population
    own = learned.reset_index(drop=True)
    own_logged = pd.concat([own, prediction_frame(pipeline.parts.predict(own), target, own.index)], axis=1)
    own_logged[target] = None
    own_logged["logged_at"] = pd.Timestamp("2026-01-01", tz="UTC")
    own_logged["version"] = "1"
    drawn = [own_logged.iloc[rng.integers(0, len(own), case.window)] for _ in range(count)]
    # inputs only: the model's predictions on rows it learned from are surer than on new ones
    inputs = [any(a.kind in ("drift", "quality") for a in monitor.judge(0, w).alarms) for w in drawn]
    print(f"  windows from the {len(own)} training and validation rows instead: an input column alarms in "
          f"{np.mean(inputs):.1%}")
    print("  " + ", ".join(f"{kind} {share:.1%}" for kind, share in alarm_kinds(monitor, logged, test, case, count)))
    ages = learned[case.age].astype(float)
    for factor in AGE_FACTORS:
        weights = np.where(test[case.age] >= 50, factor, 1.0)
        report(f"{case.age} ≥ 50 ×{factor}", case.age, weights, test, logged, learned, columns, monitor, rng,
               per_shift, lambda rows: (test[case.age].iloc[rows].mean() - ages.mean()) / ages.std())
    shares = test[case.category].value_counts(normalize=True)
    chosen = next(str(k) for k, v in shares.items() if 0.10 <= v <= 0.25)
    for factor in SHARE_FACTORS:
        share = shares[chosen]
        weights = np.where(test[case.category] == chosen, factor, (1 - factor * share) / (1 - share))
        report(f"{case.category} = {chosen!r} ({share:.0%}) ×{factor}", case.category, weights, test, logged,
               learned, columns, monitor, rng, per_shift, None)


def alarm_kinds(monitor: Monitor, logged: pd.DataFrame, test: pd.DataFrame, case: Case,
                count: int) -> list[tuple[str, float]]:
    """Which columns raised the unshifted windows' alarms (share of windows each)."""
    rng = np.random.default_rng(1)
    seen: dict[str, int] = {}
    for _ in range(count):
        window = monitor.judge(0, logged.iloc[rng.integers(0, len(test), case.window)])
        for name in {f"{a.kind}:{a.column or ''}" for a in window.alarms}:
            seen[name] = seen.get(name, 0) + 1
    return sorted(((k, v / count) for k, v in seen.items()), key=lambda item: -item[1])[:6]


def report(label: str, column: str, weights: np.ndarray, test: pd.DataFrame, logged: pd.DataFrame,
           learned: pd.DataFrame, columns: list[str], monitor: Monitor, rng: np.random.Generator, per_shift: int,
           move: object) -> None:
    p = weights / weights.sum()
    detected, ours_any, theirs_any, moves = [], [], [], []
    for _ in range(per_shift):
        rows = rng.choice(len(test), monitor.window if isinstance(monitor.window, int) else 0, p=p)
        window = monitor.judge(0, logged.iloc[rows])
        first = next(c for c in window.drift if c.column != "prediction")
        ours_any.append(bool(window.alarms))
        detected.append(bool(window.alarms) and first.column == column)
        theirs_any.append(column in tested(learned, test.iloc[rows], columns))
        if callable(move):
            moves.append(move(rows))
    shift = f" (mean {np.mean(moves):+.2f} sd)" if moves else ""
    print(f"{label}{shift}: ours detected (alarm, column first) {np.mean(detected):.0%}, any alarm "
          f"{np.mean(ours_any):.0%}; tests flag the column {np.mean(theirs_any):.0%}")


def tested(reference: pd.DataFrame, window: pd.DataFrame, columns: list[str]) -> set[str]:
    """Columns a per-column test at p < 0.05 flags: KS for numbers, chi-square for the rest."""
    flagged = set()
    for column in columns:
        old, new = reference[column].dropna(), window[column].dropna()
        if pd.api.types.is_numeric_dtype(old) and old.nunique() > 2:
            p = stats.ks_2samp(old.to_numpy(float), new.to_numpy(float)).pvalue
        else:
            categories = sorted(set(old.astype(str)) | set(new.astype(str)))
            table = np.array([[int((old.astype(str) == c).sum()) for c in categories],
                              [int((new.astype(str) == c).sum()) for c in categories]])
            table = table[:, table.sum(axis=0) > 0]
            p = stats.chi2_contingency(table).pvalue if table.shape[1] > 1 else 1.0
        if p < 0.05:
            flagged.add(column)
    return flagged


if __name__ == "__main__":
    main()
