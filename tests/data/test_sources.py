"""read_table: every format round-trips a small frame; every bad input is a clear error."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelmill.config.schema import DataConfig
from modelmill.data import download
from modelmill.data.sources import infer_format, read_table
from modelmill.errors import ConfigError, DataError


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [39, 50, 38, 53],
        "income": [1.5, 2.25, -3.0, 4.0],
        "city": ["Paris", "Lyon", "Nice", "Lille"],
        "label": ["yes", "no", "yes", "no"],
    })


def read(path: Path | str, **options: Any) -> pd.DataFrame:
    return read_table(DataConfig(source=str(path), **options))


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_column_type=False)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("sep, name", [(",", "t.csv"), (";", "t.csv"), ("\t", "t.tsv"), ("\t", "t.txt"), ("|", "t.csv")])
def test_csv_delimiters_are_sniffed(tmp_path: Path, sep: str, name: str) -> None:
    small_frame().to_csv(tmp_path / name, sep=sep, index=False)
    assert_same(read(tmp_path / name), small_frame())


def test_headerless_csv_gets_numbered_or_given_names(tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "t.csv", header=False, index=False)
    frame = read(tmp_path / "t.csv")
    assert list(frame.columns) == ["column_1", "column_2", "column_3", "column_4"]
    assert frame["column_1"].tolist() == [39, 50, 38, 53]
    named = read(tmp_path / "t.csv", columns=list(small_frame().columns))
    assert_same(named, small_frame())


def test_header_is_found_over_text_only_columns(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,city\nalice,paris\nbob,london\ncarol,rome\n")
    assert list(read(tmp_path / "t.csv").columns) == ["name", "city"]
    (tmp_path / "u.csv").write_text("red,small\nblue,large\nred,large\n")
    assert list(read(tmp_path / "u.csv").columns) == ["column_1", "column_2"]


def test_explicit_header_and_wrong_column_count(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\nc,d\n")
    assert len(read(tmp_path / "t.csv", header=False)) == 2
    with pytest.raises(ConfigError, match=r"data.columns: names 3 columns but .* has 2"):
        read(tmp_path / "t.csv", columns=["x", "y", "z"])


def test_strings_are_stripped_and_missing_markers_are_null(tmp_path: Path) -> None:
    text = "n, word ,when\n 1, a ,2020-01-02\n ?, NA ,\n 3,-,2020-01-04\n 4, N/A ,2020-01-05\n"
    (tmp_path / "t.csv").write_text(text)
    frame = read(tmp_path / "t.csv")
    assert list(frame.columns) == ["n", "word", "when"]
    assert frame["n"].isna().tolist() == [False, True, False, False]
    assert frame["n"].dtype.kind in "if"  # " ?" did not keep the column as text
    assert frame["word"].tolist()[0] == "a" and frame["word"].isna().sum() == 3
    assert pd.api.types.is_datetime64_any_dtype(frame["when"])  # ISO dates parsed by pyarrow


def test_bom_utf16_gzip_and_explicit_encoding(tmp_path: Path) -> None:
    text = small_frame().to_csv(index=False)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("bom.csv", "u16.csv", "t.csv.gz"):
        assert_same(read(tmp_path / name), small_frame())
    (tmp_path / "latin.csv").write_bytes("city,n\nS\xe3o Paulo,1\nK\xf6ln,2\n".encode("latin-1"))
    assert read(tmp_path / "latin.csv", encoding="latin-1")["city"].tolist() == ["São Paulo", "Köln"]


def test_invalid_utf8_names_file_line_and_offset(tmp_path: Path) -> None:
    good = "city,n\n" + "".join(f"town{i},{i}\n" for i in range(5))
    raw = good.encode() + b"K\xf6ln,9\n"  # line 7 is latin-1
    (tmp_path / "t.csv").write_bytes(raw)
    with pytest.raises(DataError) as caught:
        read(tmp_path / "t.csv")
    message = str(caught.value)
    assert "t.csv" in message and "line 7" in message and f"byte offset {len(good) + 1}" in message
    assert "Fix:" in message and "latin-1" in message


def test_invalid_utf8_in_a_header_or_in_json_lines(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes(b"caf\xe9,n\n1,2\n")
    with pytest.raises(DataError, match=r"t\.csv.*not valid UTF-8 at line 1, byte offset 3"):
        read(tmp_path / "t.csv")
    (tmp_path / "t.jsonl").write_bytes(b'{"a": "x"}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl.*not valid UTF-8 at line 2, byte offset 18"):
        read(tmp_path / "t.jsonl")


def test_undecodable_with_a_chosen_encoding_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes(b"a,b\n1,x\n2,\x81\n")  # 0x81 is unmapped in cp1252
    with pytest.raises(DataError, match=r"t\.csv.*not valid CP1252 at line 3"):
        read(tmp_path / "t.csv", encoding="cp1252")
    with pytest.raises(ConfigError, match="data.encoding: unknown encoding 'klingon'"):
        read(tmp_path / "t.csv", encoding="klingon")


def test_quoted_newlines_across_parse_blocks(tmp_path: Path) -> None:
    # Past pyarrow's 1 MiB block, the fast chunker falls out of sync on quoted newlines.
    rows = 30_000
    notes = np.where(np.arange(rows) % 3 == 0, "first line\nsecond, line", "plain")
    frame = pd.DataFrame({"id": np.arange(rows), "note": notes, "pad": ["x" * 30] * rows})
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert (tmp_path / "t.csv").stat().st_size > 1 << 20
    assert_same(read(tmp_path / "t.csv"), frame)


def test_ragged_rows_are_counted_and_located_never_shown(tmp_path: Path) -> None:
    # a row may hold personal data (an e-mail, a card number): its field count is shown, not its text
    (tmp_path / "t.csv").write_text("a,b\n1,2\nbob@example.com,4,5\n6,7\n8\n")
    with pytest.raises(DataError, match=r"t\.csv.*2 rows do not have 2 fields.*e\.g\. 3 fields; 1 fields") as raised:
        read(tmp_path / "t.csv")
    assert "bob" not in str(raised.value) and "8" not in str(raised.value).split("e.g.")[1]


def test_a_parse_error_never_quotes_the_row() -> None:
    from modelmill.data.delimited import _without_row_text

    error = ValueError("CSV parse error: Expected 3 columns, got 4: bob@example.com,41,0,extra")
    assert _without_row_text(error) == "CSV parse error: Expected 3 columns, got 4"


def test_header_names_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(" a ,,a,a\n1,2,3,4\n")
    assert list(read(tmp_path / "t.csv", header=True).columns) == ["a", "column_2", "a.1", "a.2"]


# ------------------------------------------------------------ empty and bad files


def test_empty_and_header_only_files_are_0_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("a,b,c\n")
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), tmp_path / "empty.parquet")
    (tmp_path / "empty.json").write_text("[]")
    for name in ("zero.parquet", "zero.json", "zero.jsonl", "zero.xlsx"):
        (tmp_path / name).write_bytes(b"")
    before = listing(tmp_path)
    for name in ("empty.csv", "header.csv", "empty.parquet", "empty.json", "zero.parquet", "zero.json",
                 "zero.jsonl", "zero.xlsx"):
        with pytest.raises(DataError, match=rf"{name}.*0 rows"):
            read(tmp_path / name)
    assert listing(tmp_path) == before


def test_missing_file_directory_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv.*file not found.*Fix"):
        read(tmp_path / "nope.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match=r"folder\.csv.*is a directory"):
        read(tmp_path / "folder.csv")
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet.*not a readable Parquet file"):
        read(tmp_path / "bad.parquet")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"bad\.csv\.gz"):
        read(tmp_path / "bad.csv.gz")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.csv").chmod(0)
    with pytest.raises(DataError, match=r"t\.csv.*cannot read it"):
        read(tmp_path / "t.csv")


def test_unknown_extension_lists_the_formats(tmp_path: Path) -> None:
    (tmp_path / "t.foo").write_text("a\n1\n")
    with pytest.raises(ConfigError, match=r"data.format: cannot tell .*t\.foo.*csv, dataset, excel"):
        read(tmp_path / "t.foo")
    assert read(tmp_path / "t.foo", format="csv")["a"].tolist() == [1]


def test_relative_paths_start_at_base_dir(tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "t.csv", index=False)
    frame = read_table(DataConfig(source="ignored.csv"), source="t.csv", base_dir=tmp_path)
    assert_same(frame, small_frame())


@pytest.mark.parametrize("source, fmt", [
    ("a.csv", "csv"), ("a.CSV.gz", "csv"), ("a.tsv", "tsv"), ("a.txt", "csv"), ("a.parquet", "parquet"),
    ("a.pq", "parquet"), ("a.json", "json"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.xlsx", "excel"),
    ("a.xls", "excel"), ("sqlite:///a.db", "sql"), ("postgresql+psycopg2://u@h/db", "sql"),
    ("dataset:adult", "dataset"), ("https://example.com/x/a.csv?raw=1", "csv"), ("file:///tmp/a.json", "json"),
])
def test_infer_format(source: str, fmt: str) -> None:
    assert infer_format(source) == fmt


# ----------------------------------------------------- Parquet, JSON, Excel


def test_parquet_round_trip(tmp_path: Path) -> None:
    small_frame().to_parquet(tmp_path / "t.parquet", index=False)
    assert_same(read(tmp_path / "t.parquet"), small_frame())


@pytest.mark.parametrize("orient", ["records", "split", "columns_as_lists", "data_key"])
def test_json_shapes(tmp_path: Path, orient: str) -> None:
    frame = small_frame()
    documents: dict[str, Any] = {
        "records": frame.to_dict(orient="records"),
        "split": frame.to_dict(orient="split", index=False),
        "columns_as_lists": frame.to_dict(orient="list"),
        "data_key": {"data": frame.to_dict(orient="records")},
    }
    (tmp_path / "t.json").write_text(json.dumps(documents[orient]))
    assert_same(read(tmp_path / "t.json"), frame)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('[\n{"a": 1},\n{"a": 2,,}\n]')
    with pytest.raises(DataError, match=r"t\.json.*not valid JSON.*line 3"):
        read(tmp_path / "t.json")
    (tmp_path / "s.json").write_text('"just a string"')
    with pytest.raises(DataError, match=r"s\.json.*holds no table.*found a JSON str"):
        read(tmp_path / "s.json")


def test_jsonl_round_trip_mixed_types_and_bad_line(tmp_path: Path) -> None:
    small_frame().to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    assert_same(read(tmp_path / "t.jsonl"), small_frame())
    (tmp_path / "mixed.ndjson").write_text('{"a": 1}\n\n{"a": "x"}\n')
    assert read(tmp_path / "mixed.ndjson")["a"].tolist() == [1, "x"]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl.*line 3 is not valid JSON"):
        read(tmp_path / "bad.jsonl")


def test_excel_round_trip_and_sheets(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="notes", index=False)
        small_frame().assign(city=lambda f: " " + f["city"]).to_excel(writer, sheet_name="data", index=False)
    assert_same(read(path, sheet="data"), small_frame())
    assert_same(read(path, sheet=1), small_frame())
    assert read(path)["x"].tolist() == [1]
    with pytest.raises(DataError, match=r"t\.xlsx.*data.sheet \('nope'\)"):
        read(path, sheet="nope")


# ----------------------------------------------------------------------- SQL


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "sales.db"
    with sqlite3.connect(path) as connection:
        small_frame().to_sql("sales", connection, index=False)
    connection.close()
    return path


def test_sqlite_query(database: Path) -> None:
    frame = read(f"sqlite:///{database}", query="SELECT * FROM sales WHERE city <> 'x:y'")
    assert_same(frame, small_frame())
    relative = read_table(DataConfig(source="sqlite:///sales.db", query="SELECT age FROM sales"),
                          base_dir=database.parent)
    assert relative["age"].tolist() == [39, 50, 38, 53]


def test_sql_errors(database: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.query: a SQL source needs a query, e.g. SELECT \* FROM sales"):
        read(f"sqlite:///{database}")
    with pytest.raises(DataError, match=r"the query failed: no such table: nope"):
        read(f"sqlite:///{database}", query="SELECT * FROM nope")
    with pytest.raises(DataError, match=r"SQLite database not found"):
        read(f"sqlite:///{tmp_path / 'missing.db'}", query="SELECT 1")
    assert not (tmp_path / "missing.db").exists()  # SQLite would have created it
    with pytest.raises(DataError) as caught:
        read("mysql+pymysql://user:s3cret@localhost/db", query="SELECT 1")
    assert "driver is not installed" in str(caught.value) and "s3cret" not in str(caught.value)


# ---------------------------------------------------------------------- http


class _Handler(SimpleHTTPRequestHandler):
    def guess_type(self, path: Any) -> str:
        return "text/csv" if str(path).endswith("export") else super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def test_http_urls(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    downloads = tmp_path / "temp"
    downloads.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(downloads))
    small_frame().to_csv(root / "t.csv", sep=";", index=False)
    (root / "t.csv.gz").write_bytes(gzip.compress((root / "t.csv").read_bytes()))
    small_frame().to_parquet(root / "t.parquet", index=False)
    (root / "export").write_text(small_frame().to_csv(index=False))
    for name in ("t.csv", "t.csv.gz", "t.parquet", "export"):
        assert_same(read(f"{url}/{name}"), small_frame())
    assert listing(downloads) == []  # temporary downloads are removed


def test_http_errors(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    downloads = tmp_path / "temp"
    downloads.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(downloads))
    with pytest.raises(DataError, match=rf"{url}/missing.csv.*HTTP 404"):
        read(f"{url}/missing.csv")
    small_frame().to_csv(root / "big.csv", index=False)
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 10)
    with pytest.raises(DataError, match=r"big\.csv.*larger than the download limit of 10 bytes"):
        read(f"{url}/big.csv")
    with pytest.raises(DataError, match=r"cannot be downloaded"):
        read("http://127.0.0.1:9/t.csv")  # the discard port: nothing listens
    assert listing(downloads) == []
