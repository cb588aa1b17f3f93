"""Reading a table from a file, an http(s) URL, a SQL database or a packaged data set.

Every format is a registration in :data:`READERS` (keyed by the ``data.format`` name),
binding how a source string is located and how it is read. Text encodings and the
CSV/TSV reader live in :mod:`modelmill.data.delimited`.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from modelmill.config.schema import DataConfig
from modelmill.data.datasets import fetch_dataset
from modelmill.data.delimited import NULL_MARKERS, Source, read_delimited, read_text, text_codec
from modelmill.data.download import download
from modelmill.data.images import is_idx_name, locate_folder, read_idx_source, read_image_folder, read_npz
from modelmill.errors import ConfigError, DataError
from modelmill.registry import Registry

__all__ = ["READERS", "Format", "Source", "infer_format", "read_table"]

_EXTENSIONS = {
    ".csv": "csv", ".txt": "csv", ".data": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet",
    ".pq": "parquet", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".xlsx": "excel", ".xlsm": "excel", ".xls": "excel", ".npz": "npz",
}
_COMPRESSED = (".gz", ".bz2", ".zst")  # pyarrow decompresses these by extension
_TEXT_FORMATS = ("csv", "tsv", "json", "jsonl")
_CONTENT_TYPES = {
    "text/csv": "csv", "text/plain": "csv", "text/tab-separated-values": "tsv",
    "application/json": "json", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
    "application/vnd.ms-excel": "excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "excel",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


@dataclass(frozen=True)
class Format:
    """A registered format: ``locate`` turns ``data.source`` into a Source, ``read`` reads it."""

    read: Callable[[Source, DataConfig], pd.DataFrame]
    locate: Callable[[str, Path], Source]


READERS: Registry[Format] = Registry("data format")


def read_table(
    config: DataConfig, *, source: str | None = None, base_dir: Path | None = None
) -> pd.DataFrame:
    """Read a source into a DataFrame with string column names.

    Args:
        config: The ``data`` section (format, query, sheet, delimiter, encoding, header, columns).
        source: What to read instead of ``config.source``: a path, a URL or ``dataset:NAME``.
        base_dir: Where relative paths start (the YAML config's folder); default the cwd.

    Returns:
        The table; never empty.

    Raises:
        ConfigError: the format is unknown or cannot be inferred, or a setting is wrong.
        DataError: the source is missing, unreadable, malformed or holds 0 rows (the
            message names it, and where known the line).
    """
    raw = source if source is not None else config.source
    base = base_dir if base_dir is not None else Path.cwd()
    if _scheme(raw) in ("http", "https"):
        with download(raw) as (path, content_type):
            fmt = config.format if config.format != "auto" else _download_format(raw, content_type)
            return _read(READERS.get(fmt, path="data.format"), Source(str(path), raw), config)
    fmt = config.format if config.format != "auto" else infer_format(raw, base)
    entry = READERS.get(fmt, path="data.format")
    return _read(entry, entry.locate(raw, base), config)


def infer_format(source: str, base: Path | None = None) -> str:
    """The format name a source implies: its URL scheme, ``dataset:`` prefix or extension.

    Raises:
        ConfigError: nothing tells the format (the message lists the valid ones).
    """
    if source.startswith("dataset:"):
        return "dataset"
    if is_idx_name(source):
        return "idx"
    scheme = _scheme(source)
    if scheme and scheme not in ("file", "http", "https"):
        return "sql"  # any dialect[+driver]:// is a SQLAlchemy URL
    fmt = _format_from_name(unquote(urlparse(source).path) if scheme else source)
    if fmt is None and not scheme and ((base or Path.cwd()) / Path(source).expanduser()).is_dir():
        return "images"  # a folder of images (an absolute source ignores base)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {source!r} from its extension; set data.format to one "
            f"of: {', '.join(READERS.names())}",
            path="data.format",
        )
    return fmt


def _read(entry: Format, src: Source, config: DataConfig) -> pd.DataFrame:
    try:
        frame = entry.read(src, config)
    except OSError as error:  # permissions, I/O, corrupt compression: pyarrow raises OSError
        raise DataError(f"cannot read it: {error.strerror or error}", source=src.label) from None
    if len(frame) == 0:
        raise DataError(
            "0 rows: it holds no records (an empty file, a header only, or a query that "
            "matched nothing). Fix: point data.source at the data itself",
            source=src.label,
        )
    frame.columns = [str(name) for name in frame.columns]
    return frame


def _scheme(source: str) -> str:
    match = _SCHEME.match(source)
    return match.group(1).lower() if match else ""


def _format_from_name(name: str) -> str | None:
    suffixes = [suffix.lower() for suffix in PurePosixPath(name).suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    if compressed:
        suffixes.pop()
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    return None if compressed and fmt not in _TEXT_FORMATS else fmt


def _local_file(raw: str, base: Path) -> Source:
    """A path resolved against ``base``: it must exist and be a regular file."""
    text = unquote(urlparse(raw).path) if _scheme(raw) == "file" else raw
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise DataError(
            f"file not found: {path}. Fix: check the path (relative paths start at {base})",
            source=raw,
        )
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise DataError(f"{path} is {kind}. Fix: point data.source at a data file", source=raw)
    _check_not_empty(path, raw)
    return Source(str(path), raw)


def _check_not_empty(path: Path, label: str) -> None:
    if path.stat().st_size == 0:
        raise DataError("0 rows: the file is empty (0 bytes)", source=label)


# ------------------------------------------------------------ other file formats


def _read_tsv(src: Source, config: DataConfig) -> pd.DataFrame:
    return read_delimited(src, config, default_delimiter="\t")


def _read_parquet(src: Source, config: DataConfig) -> pd.DataFrame:
    try:
        table = pq.read_table(src.location)
    except pa.ArrowInvalid as error:
        raise DataError(
            f"is not a readable Parquet file ({error}). Fix: check that it is Parquet and complete",
            source=src.label,
        ) from None
    return table.to_pandas(date_as_object=False)


def _read_json(src: Source, config: DataConfig) -> pd.DataFrame:
    try:
        document = json.loads(read_text(src, config))
    except json.JSONDecodeError as error:
        raise DataError(
            f"is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            source=src.label,
        ) from None
    return _records_frame(document, src)


def _records_frame(document: Any, src: Source) -> pd.DataFrame:
    """A frame from records, ``{"data": records}``, pandas' split orient, or column lists."""
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        if isinstance(document.get("columns"), list):
            return pd.DataFrame(document["data"], columns=document["columns"])
        document = document["data"]
    if isinstance(document, list) and all(isinstance(record, dict) for record in document):
        return pd.DataFrame(document)
    if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
        lengths = {len(values) for values in document.values()}
        if len(lengths) == 1:
            return pd.DataFrame(document)
    raise DataError(
        'holds no table: expected a list of records [{"a": 1, ...}, ...], {"data": [...]}, '
        f'or {{"column": [values...], ...}}; found a JSON {type(document).__name__}',
        source=src.label,
    )


def _read_jsonl(src: Source, config: DataConfig) -> pd.DataFrame:
    if text_codec(src, config.encoding) == "utf-8":
        try:
            table = pajson.read_json(src.location)
            table.validate(full=True)  # pyarrow.json does not check UTF-8 itself
            return table.to_pandas(date_as_object=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # mixed types or bad bytes: the line-by-line reader copes or names the line
    records = []
    for number, line in enumerate(read_text(src, config).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"line {number} is not valid JSON: {error.msg}", source=src.label) from None
        if not isinstance(record, dict):
            raise DataError(f"line {number} is not a JSON object", source=src.label)
        records.append(record)
    return pd.DataFrame(records)


def _read_excel(src: Source, config: DataConfig) -> pd.DataFrame:
    sheet = config.sheet if config.sheet is not None else 0
    try:
        frame = pd.read_excel(
            src.location, sheet_name=sheet, header=None if config.header is False else 0,
            names=config.columns, na_values=NULL_MARKERS, keep_default_na=False,
        )
    except ImportError as error:
        raise DataError(
            f"needs a package to read this workbook: {error}. Fix: pip install openpyxl "
            "(.xlsx) or xlrd (.xls)",
            source=src.label,
        ) from None
    except (ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(
            f"cannot be read as Excel ({error}). Fix: check that it is a workbook and that "
            f"data.sheet ({sheet!r}) names one of its sheets",
            source=src.label,
        ) from None
    if config.header is False and config.columns is None:  # named as headerless CSVs are
        frame.columns = [f"column_{i + 1}" for i in range(frame.shape[1])]
    return _strip_frame(frame)


def _strip_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip text cells and null the missing markers, leaving numbers in mixed columns alone."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            stripped = column.map(lambda value: value.strip() if isinstance(value, str) else value)
            frame[name] = stripped.mask(stripped.isin(NULL_MARKERS))
    return frame


# ------------------------------------------------------------ SQL and data sets


def _sql_source(raw: str, base: Path) -> Source:
    """The URL with a relative SQLite path resolved; the label hides any password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError as error:
        raise ConfigError(f"not a database URL {raw!r}: {error}", path="data.source") from None
    label = url.render_as_string(hide_password=True)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:"):
        path = Path(database).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():  # SQLite would silently create an empty database
            raise DataError(
                f"SQLite database not found: {path}. Fix: check the path (relative paths start "
                f"at {base})",
                source=label,
            )
        url = url.set(database=str(path))
    return Source(url.set(drivername=installed_driver(url.drivername)).render_as_string(hide_password=False), label)


def installed_driver(drivername: str) -> str:
    """``postgresql`` without a driver means psycopg2 to SQLAlchemy; where only psycopg 3 is
    installed (``pip install 'modelmill[postgres]'``), the same URL uses it."""
    import importlib.util

    if drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None \
            and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg"
    return drivername


def _read_sql(src: Source, config: DataConfig) -> pd.DataFrame:
    import sqlalchemy
    from sqlalchemy import exc

    if not config.query:
        raise ConfigError("a SQL source needs a query, e.g. SELECT * FROM sales", path="data.query")
    try:
        engine = sqlalchemy.create_engine(src.location)
    except exc.NoSuchModuleError:
        raise ConfigError(
            f"SQLAlchemy knows no database {src.label.split('://')[0]!r}. Fix: use a file path, "
            "an http(s) URL, dataset:NAME, or a database URL such as sqlite:///file.db",
            path="data.source",
        ) from None
    except ImportError as error:
        raise DataError(
            f"the database driver is not installed ({error}). Fix: pip install it, e.g. "
            "pip install 'modelmill[postgres]' for postgresql",
            source=src.label,
        ) from None
    try:
        with engine.connect() as connection:
            # A plain string runs as the driver's SQL: no ':name' bind parsing of the query.
            return pd.read_sql_query(config.query, connection)
    except (exc.SQLAlchemyError, pd.errors.DatabaseError) as error:
        message = database_message(error)
        raise DataError(f"the query failed: {message}. Query: {config.query}", source=src.label) from None
    finally:
        engine.dispose()


def database_message(error: BaseException) -> str:
    """The database's own message: pandas and SQLAlchemy wrap it (``orig``) in theirs."""
    cause: BaseException | None = error
    while cause is not None:
        original = getattr(cause, "orig", None)
        if original is not None:
            return str(original).strip()
        cause = cause.__cause__
    return str(error).strip()


def _dataset_source(raw: str, base: Path) -> Source:
    return Source(raw.removeprefix("dataset:"), raw)


def _read_dataset(src: Source, config: DataConfig) -> pd.DataFrame:
    path = fetch_dataset(src.location)
    fixed = config.model_copy(
        update={"delimiter": ",", "header": True, "columns": None, "encoding": "utf-8"}
    )
    return read_delimited(Source(str(path), src.label), fixed)


def _download_format(url: str, content_type: str) -> str:
    fmt = _format_from_name(PurePosixPath(unquote(urlparse(url).path)).name)
    fmt = fmt or _CONTENT_TYPES.get(content_type)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {url!r} from its path or its Content-Type "
            f"({content_type}); set data.format to one of: {', '.join(READERS.names())}",
            path="data.format",
        )
    return fmt


READERS.add("csv", Format(read_delimited, _local_file))
READERS.add("tsv", Format(_read_tsv, _local_file))
READERS.add("parquet", Format(_read_parquet, _local_file))
READERS.add("json", Format(_read_json, _local_file))
READERS.add("jsonl", Format(_read_jsonl, _local_file))
READERS.add("excel", Format(_read_excel, _local_file))
READERS.add("sql", Format(_read_sql, _sql_source))
READERS.add("dataset", Format(_read_dataset, _dataset_source))
READERS.add("idx", Format(read_idx_source, _local_file))
READERS.add("npz", Format(read_npz, _local_file))
READERS.add("images", Format(read_image_folder, locate_folder))
