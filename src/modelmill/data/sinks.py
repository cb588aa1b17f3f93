"""Writing tables (predictions) atomically, in the format the file name asks for."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from modelmill.errors import DataError


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
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        writers[suffix](temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
