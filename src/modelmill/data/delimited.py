"""Text files: encodings (checked, never silently replaced) and delimited (CSV/TSV) reading.

CSV goes through pyarrow's multi-threaded reader. Whitespace stripping and missing markers
are applied column-wise with pyarrow compute, before one conversion to pandas, so the
clean-up costs little next to the parse. The delimiter and the header are sniffed from a
sample unless the config says.
"""

from __future__ import annotations

import codecs
import csv
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from modelmill.config.schema import DataConfig
from modelmill.data.values import MISSING_MARKERS
from modelmill.errors import ConfigError, DataError

__all__ = ["NULL_MARKERS", "Source", "read_delimited", "read_text", "text_codec"]

#: Cells read as missing: the markers shared by every stage, plus "-" (spreadsheet exports).
NULL_MARKERS: list[str] = sorted(MISSING_MARKERS)
_SAMPLE_BYTES = 64 * 1024
_SNIFF_LINES = 50


@dataclass(frozen=True)
class Source:
    """What a reader opens (``location``) and what its error messages call it (``label``)."""

    location: str
    label: str


# ------------------------------------------------------------------ text encodings


def _open(src: Source) -> Any:
    """A binary stream of the file, decompressed when its extension says so (.gz, .bz2, .zst)."""
    return pa.input_stream(src.location, compression="detect")


def text_codec(src: Source, encoding: str) -> str:
    """The Python codec of a text file: ``auto`` is UTF-8, or UTF-16 when a UTF-16 BOM says so.

    Raises:
        ConfigError: ``encoding`` names no codec Python knows.
    """
    if encoding != "auto":
        try:
            return codecs.lookup(encoding).name
        except LookupError:
            raise ConfigError(
                f"unknown encoding {encoding!r}; e.g. utf-8, latin-1, cp1252, utf-16",
                path="data.encoding",
            ) from None
    with _open(src) as stream:
        head = stream.read(4)
    return "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8"


def read_text(src: Source, config: DataConfig) -> str:
    """The whole file as text (a UTF-8 BOM dropped); undecodable bytes are a DataError."""
    codec = text_codec(src, config.encoding)
    with _open(src) as stream:
        raw = stream.read()
    try:
        return str(raw.decode("utf-8-sig" if codec == "utf-8" else codec))
    except UnicodeDecodeError:
        raise _undecodable(src, codec, chosen=config.encoding != "auto") from None


def _undecodable(src: Source, codec: str, *, chosen: bool) -> DataError:
    """The error for bytes that are not ``codec``, naming the line and byte offset."""
    found = _find_undecodable(src, codec)
    where = f"line {found[0]}, byte offset {found[1]} ({found[2]!r})" if found else "some line"
    fix = (
        f"Fix: set data.encoding to the file's real encoding (it is not {codec})"
        if chosen
        else "Fix: if the file is in a legacy encoding, set `data.encoding: latin-1` (or cp1252)"
    )
    return DataError(
        f"is not valid {codec.upper()} at {where}; no bytes were replaced. {fix}", source=src.label
    )


def _find_undecodable(src: Source, codec: str) -> tuple[int, int, bytes] | None:
    """(line, byte offset, bad bytes) of the first undecodable bytes, streaming the file."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    fed, lines = 0, 1
    with _open(src) as stream:
        while True:
            chunk = stream.read(1 << 20)
            held = getattr(decoder, "buffer", b"")  # bytes a buffered decoder kept from before
            try:
                lines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as error:
                before = error.object[: error.start].decode(codec, errors="replace")
                offset = fed - len(held) + error.start
                return lines + before.count("\n"), offset, error.object[error.start : error.end]
            if not chunk:
                return None
            fed += len(chunk)


# --------------------------------------------------------------------------- CSV


def read_delimited(
    src: Source, config: DataConfig, *, default_delimiter: str | None = None
) -> pd.DataFrame:
    """Read a delimited text file (CSV, TSV; compressed by extension) into a DataFrame.

    Args:
        src: The file and its name for messages.
        config: ``delimiter``, ``header``, ``columns`` and ``encoding`` are used; unset ones
            are sniffed (delimiter among , ; tab |) or defaulted (UTF-8).
        default_delimiter: Used when ``config.delimiter`` is unset, instead of sniffing.

    Raises:
        DataError: empty file, undecodable bytes (with line and byte offset), rows with the
            wrong number of fields.
        ConfigError: ``config.columns`` does not match the file's width.
    """
    codec = text_codec(src, config.encoding)
    sample = _sample(src, codec)
    if not sample.strip():
        raise DataError("0 rows: the file is empty", source=src.label)
    delimiter = config.delimiter or default_delimiter or _sniff_delimiter(sample)
    rows = [row for row in csv.reader(sample.splitlines(), delimiter=delimiter) if any(row)]
    header = config.header if config.header is not None else _sniff_header(sample, rows)
    names = _column_names(config, header, width=len(rows[0]))
    read = pacsv.ReadOptions(
        encoding="utf8" if codec == "utf-8" else codec,  # pyarrow skips a UTF-8 BOM itself
        column_names=names,
        skip_rows=1 if header and names else 0,
    )
    table = _parse(src, read, delimiter, codec=codec, chosen=config.encoding != "auto")
    return _tidy(table).to_pandas(date_as_object=False)


def _sample(src: Source, codec: str) -> str:
    """The first lines of the file as text, for sniffing (complete lines only)."""
    with _open(src) as stream:
        raw = stream.read(_SAMPLE_BYTES)
    text = str(codecs.getincrementaldecoder(codec)("replace").decode(raw, final=False))
    text = text.removeprefix("\ufeff")
    if len(raw) == _SAMPLE_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return "\n".join(text.splitlines()[:_SNIFF_LINES])


def _sniff_delimiter(sample: str) -> str:
    try:
        return str(csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter)
    except csv.Error:  # one column, or no consistent candidate
        return ","


def _sniff_header(sample: str, rows: list[list[str]]) -> bool:
    """Whether the first row names the columns.

    A lone line is taken as a header (one record is no data set). csv.Sniffer judges by
    types and lengths, so it misses headers over all-text columns; then the first row
    counts as names when its cells are distinct non-numbers not repeated below them.
    """
    if len(rows) < 2:
        return True
    try:
        if csv.Sniffer().has_header(sample):
            return True
    except csv.Error:
        pass
    first = [cell.strip() for cell in rows[0]]
    if len(set(first)) < len(first) or any(not c or c in NULL_MARKERS or _is_number(c) for c in first):
        return False
    below = [{row[i].strip() for row in rows[1:] if i < len(row)} for i in range(len(first))]
    return not any(cell in seen for cell, seen in zip(first, below))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_names(config: DataConfig, header: bool, *, width: int) -> list[str] | None:
    """Names to give pyarrow: None reads them from the header row."""
    if config.columns is None:
        return None if header else [f"column_{i + 1}" for i in range(width)]
    if len(config.columns) != width:
        raise ConfigError(
            f"names {len(config.columns)} columns but the file's first line has {width} fields",
            path="data.columns",
        )
    return list(config.columns)


def _parse(src: Source, read: Any, delimiter: str, *, codec: str, chosen: bool) -> pa.Table:
    """The pyarrow parse, with every failure turned into a DataError naming the file."""
    try:
        try:
            table, ragged = _parse_once(src, read, delimiter, newlines_in_values=False)
        except pa.ArrowInvalid as error:
            # The fast chunker splits blocks at any newline; pyarrow notices when one was
            # inside a quoted cell, and then the quote-aware chunker (~30% slower) is needed.
            if "out of sync" not in str(error):
                raise
            table, ragged = _parse_once(src, read, delimiter, newlines_in_values=True)
    except UnicodeDecodeError:  # only with a transcoding codec (not UTF-8)
        raise _undecodable(src, codec, chosen=chosen) from None
    except pa.ArrowInvalid as error:
        raise DataError(
            f"cannot be parsed with delimiter {delimiter!r}: {_without_row_text(error)}. Fix: set data.delimiter",
            source=src.label,
        ) from None
    if ragged.count:
        raise _ragged_error(src, ragged, delimiter)
    if _has_invalid_utf8(table):
        raise _undecodable(src, codec, chosen=chosen)
    return table


def _has_invalid_utf8(table: pa.Table) -> bool:
    """pyarrow keeps cells of invalid UTF-8 as binary columns, and a header's bad bytes fail
    only when the names are decoded."""
    try:
        names = table.column_names
    except UnicodeDecodeError:
        return True
    return any(pa.types.is_binary(table.schema.field(i).type) for i in range(len(names)))


@dataclass
class _RaggedRows:
    """pyarrow's invalid-row handler: skips rows with the wrong number of fields, counting
    them (to report all at once) and keeping a few as examples (their line numbers and
    field counts are reported, never their text: a row may hold personal data)."""

    count: int = 0
    examples: list[Any] = field(default_factory=list)

    def __call__(self, row: Any) -> str:
        self.count += 1
        if len(self.examples) < 3:
            self.examples.append(row)
        return "skip"


def _parse_once(
    src: Source, read: Any, delimiter: str, *, newlines_in_values: bool
) -> tuple[pa.Table, _RaggedRows]:
    ragged = _RaggedRows()
    parse = pacsv.ParseOptions(
        delimiter=delimiter, newlines_in_values=newlines_in_values, invalid_row_handler=ragged
    )
    convert = pacsv.ConvertOptions(null_values=NULL_MARKERS, strings_can_be_null=True)
    table = pacsv.read_csv(src.location, read_options=read, parse_options=parse, convert_options=convert)
    return table, ragged


def _ragged_error(src: Source, ragged: _RaggedRows, delimiter: str) -> DataError:
    # where and how many fields, never the row's text: a row may hold personal data
    examples = "; ".join(f"{'line ' + str(row.number) + ': ' if row.number is not None else ''}"
                         f"{row.actual_columns} fields" for row in ragged.examples)
    return DataError(
        f"{ragged.count} rows do not have {ragged.examples[0].expected_columns} fields (delimiter "
        f"{delimiter!r}), e.g. {examples} (rows not shown: they may hold personal data). Fix: quote "
        "values that hold the delimiter, or set data.delimiter",
        source=src.label,
    )


def _without_row_text(error: Exception) -> str:
    """pyarrow's parse error without the row it quotes ("Expected 3 columns, got 4: <the row>")."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.sub(r"(got \d+)\s*:.*$", r"\1", text)


def _tidy(table: pa.Table) -> pa.Table:
    """Stripped strings, missing markers as nulls, unique non-empty column names."""
    # pyarrow compute releases the GIL: columns are tidied in parallel.
    with ThreadPoolExecutor(max_workers=max(1, pa.cpu_count())) as pool:
        columns = list(pool.map(_tidy_column, table.columns))
    return pa.table(columns, names=_unique(table.column_names))


def _tidy_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_null(column.type):  # an all-empty column: text, so pandas gives str, not object
        return column.cast(pa.string())
    if not pa.types.is_string(column.type):
        return column  # pyarrow already trims numbers, dates and booleans
    trimmed = pc.utf8_trim_whitespace(column)
    if pc.sum(pc.binary_length(trimmed)) == pc.sum(pc.binary_length(column)):
        return column  # nothing was padded, and pyarrow already nulled the bare markers
    missing = pc.is_in(trimmed, value_set=pa.array(NULL_MARKERS))
    return _recover_numbers(pc.if_else(missing, pa.scalar(None, pa.string()), trimmed))


def _recover_numbers(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column that is numeric once " ?"-style padded markers are nulls becomes numeric."""
    head = column.slice(0, 200).drop_null().to_pylist()
    if not head or not all(_is_number(value) for value in head):
        return column
    for kind in (pa.int64(), pa.float64()):
        try:
            return pc.cast(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def _unique(names: list[str]) -> list[str]:
    """Header names stripped; empty ones become column_N, repeats get .1, .2 (as pandas does)."""
    result: list[str] = []
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        base = name.strip() or f"column_{position}"
        unique, copy = base, 0
        while unique in seen:
            copy += 1
            unique = f"{base}.{copy}"
        seen.add(unique)
        result.append(unique)
    return result
