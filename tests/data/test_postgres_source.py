"""A SQL source against a real PostgreSQL server started by the test: a pipeline trains
from a query, and a wrong query, a server that is not there and a missing driver say so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from modelmill.api import Pipeline
from modelmill.config import parse_config
from modelmill.data.sources import read_table
from modelmill.errors import DataError
from tests.conftest import base_config, make_frame
from tests.postgres import postgres_server

TABLE = [{"name": "x", "type": "number"}, {"name": "colour", "type": "category"}, {"name": "flag", "type": "binary"}]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        make_frame(500).to_sql("sales", engine, index=False)
        engine.dispose()
        yield url


def test_a_pipeline_trains_from_a_postgresql_query(postgres: str, tmp_path: Path) -> None:
    # a plain postgresql:// URL: the installed driver (psycopg 3) is used
    config = parse_config(base_config(features=TABLE, data={
        "source": postgres, "query": "SELECT x, colour, flag, label FROM sales WHERE x > -10",
        "split": {"method": "stratified", "test": 0.25, "seed": 0}}))
    frame = read_table(config.data)
    expected = make_frame(500)[["x", "colour", "flag", "label"]]
    pd.testing.assert_frame_equal(frame, expected)  # every row and value as written
    pipeline = Pipeline(config).fit()
    assert pipeline.metrics_["roc_auc"] > 0.8
    assert pipeline.split_ is not None and "postgres@127.0.0.1" in pipeline.split_.source


def test_postgresql_failures_are_clear(postgres: str) -> None:
    def read(source: str, query: str) -> pd.DataFrame:
        return read_table(parse_config(base_config(data={"source": source, "query": query})).data)

    with pytest.raises(DataError, match=r'the query failed: relation "nope" does not exist'):
        read(postgres, "SELECT * FROM nope")
    unreachable = postgres.replace("postgres@", "postgres:s3cret@").rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(DataError) as caught:
        read(unreachable, "SELECT 1")
    message = str(caught.value)
    assert "the query failed" in message and "127.0.0.1" in message and "s3cret" not in message
