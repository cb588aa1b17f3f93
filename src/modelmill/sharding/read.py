"""Reading a Parquet or CSV source (a file, a folder of them, a glob) as a Ray Dataset whose
rows carry their position in the whole table, and turning its batches into the pandas
frames the single-machine reader would have given for the same rows.

Two things of the whole table a batch alone cannot know are settled here, so that each
batch's frame holds the values the whole frame holds:

* **Row positions.** Ties between equal counts break by first occurrence, and duplicate
  removal keeps the first copy, both in the order of the whole table: every row carries
  its position (``ROW``), files taken in sorted order (as ``sorted(glob)`` lists them),
  rows in file order. The table is read once into the object store in that order
  (``preserve_order``), each block's rows counted, and each block numbered from its offset
  (``Dataset.zip`` with ``ray.data.range`` would do it too, but Ray deprecates it).
* **Nullable integers and booleans.** pyarrow gives pandas float64 for an integer column
  with a null in it (object for booleans), the type it has without: a batch without nulls
  would turn 3 into "3" where the whole table has "3.0". Columns holding a null anywhere are
  found in one pass and read as the whole table reads them, in every batch.
* **pandas' own metadata.** A Parquet file written by pandas says which pandas types its
  columns had (``Int64``, say), and the single-machine reader restores them; the first
  file's metadata is read on the cluster and given to every batch.
* **A column of several types.** CSV files are read one by one, each with the types its own
  values suggest. A column gets one type in every block: integers in one file and floats in
  another are floats everywhere, a file where it is empty takes the others' type, and a
  column read as numbers from one file and as text from another (a word in a number column,
  codes that are digits in some files only) is text everywhere, as in a frame read whole,
  except that its numbers are written as pyarrow writes them (``1.5``, and ``1`` for
  ``1.0``). Parquet files must agree on their schema (Ray reads them all with the first's).

A user's error raised on the cluster (a batch's ``DataError``) comes back as itself: each
dataset raises a batch function's own exception (``raise_original_map_exception``), and
``user_errors`` takes it out of Ray's wrapper.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelmill.errors import DataError, ModelmillError

ROW = "__modelmill_row"  # the row's position in the whole table
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_WILDCARDS = "*?["


@dataclass(frozen=True)
class Reading:
    """How a batch is read as the whole table's frame of its rows (see above)."""

    nullable: frozenset[str] = frozenset()  # integer and boolean columns with a null somewhere
    metadata: dict[bytes, bytes] | None = None  # the Parquet schema's (pandas' types)


@dataclass(frozen=True)
class Shards:
    """A table in shards on the cluster: ``dataset`` (a Ray Dataset with the ``ROW``
    column), where it came from, its rows, and how its batches are read."""

    dataset: Any
    source: str
    rows: int
    reading: Reading = Reading()

    def with_dataset(self, dataset: Any, rows: int) -> Shards:
        return Shards(dataset, self.source, rows, self.reading)


def source_files(source: str, base: Path | None = None) -> tuple[str, list[str]]:
    """The format and the sorted files of ``source``: a file, a folder (its .parquet or .csv
    files), or a glob.

    Raises:
        DataError: nothing is there, or the files are of no readable or of mixed formats.
    """
    path = Path(source).expanduser()
    path = path if path.is_absolute() else (base or Path.cwd()) / path
    if any(mark in source for mark in _WILDCARDS):
        files = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    elif path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file() and _format_of(p) is not None)
    elif path.is_file():
        files = [str(path)]
    else:
        raise DataError(f"nothing at {path}. Fix: give a Parquet or CSV file, a folder of them, or a glob "
                        "(relative paths start at the config's folder)", source=source)
    if not files:
        raise DataError(f"no Parquet or CSV files at {path}. Fix: check the folder or the pattern", source=source)
    formats = {_format_of(Path(f)) for f in files}
    if None in formats or len(formats) > 1:
        shown = ", ".join(sorted(str(f) for f in formats))
        raise DataError(f"the files are of formats {shown}; shards are read from Parquet files or CSV files, one "
                        "format at a time. Fix: point the source at files of one format", source=source)
    return str(formats.pop()), files


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes.pop()
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def read_shards(source: str, *, base: Path | None = None, blocks: int | None = None) -> Shards:
    """``source`` as shards on the cluster (connected as ``modelmill.cluster.connect`` does),
    each row with its position; ``blocks``: how many blocks to read into (default Ray's).

    Raises:
        DataError: the source is not there, or the cluster's workers cannot read it (the
            message names it and gives the workers' reason).
    """
    from modelmill.cluster import connect

    ray = connect(what="reading data in shards")
    fmt, files = source_files(source, base)
    try:
        dataset = _read(ray, fmt, files, blocks)
        dataset.context.execution_options.preserve_order = True  # positions follow the files' order
        dataset, rows, nullable = _numbered(ray, dataset)
        metadata = ray.get(ray.remote(_schema_metadata).remote(files[0])) if fmt == "parquet" else None
    except DataError:
        raise
    except Exception as error:  # reading failed (on a worker, or listing on the driver): name what
        raise DataError(f"it cannot be read on the cluster: {cluster_reason(error)}. Fix: put the data where every "
                        "node of the cluster (and this driver) can read it, and check that it is valid "
                        + ("Parquet, every file with the same columns and types" if fmt == "parquet" else "CSV"),
                        source=source) from None
    if rows == 0:
        raise DataError("0 rows: it holds no records", source=source)
    return Shards(dataset, source, rows, Reading(nullable, metadata))


def _schema_metadata(path: str) -> dict[bytes, bytes] | None:
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata


def _read(ray: Any, fmt: str, files: list[str], blocks: int | None) -> Any:
    if fmt == "parquet":
        return ray.data.read_parquet(files, file_extensions=None, override_num_blocks=blocks)
    from pyarrow import csv as pacsv

    from modelmill.data.delimited import NULL_MARKERS

    # the single-machine reader's parse (delimited.read_delimited), comma-separated with a header
    convert = pacsv.ConvertOptions(null_values=NULL_MARKERS, strings_can_be_null=True)
    return ray.data.read_csv(files, convert_options=convert, override_num_blocks=blocks).map_batches(
        _tidy, batch_format="pyarrow")


def _tidy(batch: pa.Table) -> pa.Table:
    from modelmill.data.delimited import _tidy_column

    return pa.table([_tidy_column(pa.chunked_array(c)) for c in batch.columns], names=batch.column_names)


def _numbered(ray: Any, dataset: Any) -> tuple[Any, int, frozenset[str]]:
    """The dataset read into the object store with every row's position and each column of one
    type in every block, its rows, and its integer and boolean columns holding a null somewhere."""
    refs = dataset.materialize().to_arrow_refs()  # the blocks, in the files' order
    surveys = ray.get([ray.remote(_survey).remote(ref) for ref in refs])
    offsets = np.cumsum([0] + [rows for rows, _ in surveys])
    types = _column_types([columns for _, columns in surveys])
    number = ray.remote(_number)
    numbered = [number.remote(ref, int(start), types) for ref, start in zip(refs, offsets)]
    nulls = {name: sum(columns[name][1] for _, columns in surveys if name in columns) for name in types}
    nullable = frozenset(name for name, kind in types.items()
                         if (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and nulls[name])
    return dataset_of(numbered), int(offsets[-1]), nullable


def dataset_of(blocks: list[Any]) -> Any:
    """A Ray Dataset of Arrow blocks in the object store (references), whose batch functions
    raise their own errors, for ``user_errors`` (the datasets made from it inherit that)."""
    import ray

    dataset = ray.data.from_arrow_refs(blocks)
    dataset.context.raise_original_map_exception = True
    return dataset


def _survey(block: pa.Table) -> tuple[int, dict[str, tuple[pa.DataType, int]]]:
    """The block's rows, and each column's type (null where every value is: a CSV reader gives
    such a column a type of its own choosing) and nulls."""
    return block.num_rows, {name: (pa.null() if column.null_count == block.num_rows else column.type,
                                   column.null_count) for name, column in zip(block.column_names, block.columns)}


def _column_types(blocks: list[dict[str, tuple[pa.DataType, int]]]) -> dict[str, pa.DataType]:
    """Each column's type in every block: its blocks' types widened into one (integers and
    floats into floats, a column of nulls into the others' type), or text where they do not
    widen (text in one block, numbers or dates in another)."""
    seen: dict[str, set[pa.DataType]] = {}
    for columns in blocks:
        for name, (kind, _) in columns.items():
            seen.setdefault(name, set()).add(kind)
    types = {}
    for name, kinds in seen.items():
        try:
            types[name] = pa.unify_schemas([pa.schema([(name, kind)]) for kind in kinds],
                                           promote_options="permissive").field(name).type
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            types[name] = pa.string()
    return types


def _number(block: pa.Table, start: int, types: dict[str, pa.DataType]) -> pa.Table:
    for at, (name, column) in enumerate(zip(block.column_names, block.columns)):
        wanted = types.get(name, column.type)
        if column.type != wanted and not pa.types.is_null(wanted):
            # integers widened to floats lose digits past 2**53, as a float column read whole does
            lossy = pa.types.is_integer(column.type) and pa.types.is_floating(wanted)
            block = block.set_column(at, name, column.cast(wanted, safe=not lossy))
    return block.append_column(ROW, pa.array(np.arange(start, start + block.num_rows, dtype=np.int64)))


def in_row_order(batch: pa.Table) -> pa.Table:
    """The batch's rows sorted by their position in the whole table (``frame_of``'s order)."""
    return batch.take(pa.compute.sort_indices(batch, sort_keys=[(ROW, "ascending")]))


def frame_of(batch: pa.Table, reading: Reading) -> tuple[pd.DataFrame, np.ndarray]:
    """A batch as the single-machine reader's frame of the same rows (``to_pandas`` of the
    table with the file's pandas metadata, nullable columns as a table with nulls gives
    them), in row order, and the rows' positions."""
    batch = in_row_order(batch)
    rows = batch.column(ROW).to_numpy()
    table = batch.drop_columns([ROW])
    if reading.metadata:
        table = table.replace_schema_metadata(reading.metadata)
    frame = table.to_pandas(date_as_object=False)
    for name in reading.nullable & set(frame.columns):
        dtype = frame[name].dtype
        if isinstance(dtype, np.dtype) and dtype.kind == "b":  # numpy's, not pandas' nullable types
            frame[name] = frame[name].astype(object)
        elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
            frame[name] = frame[name].astype("float64")
    return frame, rows


@contextmanager
def user_errors(source: str) -> Iterator[None]:
    """A user's error raised by a batch function on the cluster, taken out of Ray's wrapper
    (whose message holds a traceback): a DataError names ``source`` where it names none."""
    try:
        yield
    except ModelmillError as error:  # Ray's wrapper is an instance of the error it wraps
        cause = getattr(error, "cause", None)
        if not isinstance(cause, ModelmillError) or cause is error:
            raise
        if isinstance(cause, DataError):
            raise DataError(getattr(cause, "detail", str(cause)), source=cause.source or source, column=cause.column,
                            rows=cause.rows) from None
        text = str(cause)
        if "\nFailed to apply UDF" in text:  # Ray Data adds its retry advice to the message
            cause.args = (text.split("\nFailed to apply UDF", 1)[0],)
        raise cause from None


def cluster_reason(error: BaseException) -> str:
    """The first line of what failed on the worker, shortened."""
    text = str(getattr(error, "cause", None) or error)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("Traceback", "  "))]
    useful = [line for line in lines if "Error" in line or "rror:" in line] or lines or [type(error).__name__]
    return " ".join(useful[-1].split())[:400]
