"""Writing tables (predictions) atomically, in the format the file name asks for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelmill.errors import DataError
from modelmill.files import atomic_path


def write_table(frame: pd.DataFrame, path: Path) -> None:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    writers = {
        ".csv": lambda p: frame.to_csv(p, index=False),
        ".csv.gz": lambda p: frame.to_csv(p, index=False, compression="gzip"),
        ".tsv": lambda p: frame.to_csv(p, index=False, sep="\t"),
        ".parquet": lambda p: frame.to_parquet(p, index=False),
        ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
        ".json": lambda p: frame.to_json(p, orient="records"),
    }
    if suffix not in writers:
        raise DataError(f"cannot write {path}: unknown extension {suffix!r}; use one of {', '.join(writers)}")
    with atomic_path(path) as temp:
        writers[suffix](temp)
