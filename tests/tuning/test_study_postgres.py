"""A study kept in a real PostgreSQL server (started by the test) instead of SQLite, and
a study database that cannot be opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from modelmill.errors import ConfigError
from modelmill.tuning import TuneSettings, run_study
from tests.postgres import postgres_server
from tests.tuning.test_study import tiny


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_a_study_in_postgresql_resumes_from_there(postgres: str, tmp_path: Path) -> None:
    config = tiny(tmp_path, tune={"trials": 3, "startup_trials": 1, "space": {
        "model.members.0.leaves": {"low": 2, "high": 32}}})
    settings = TuneSettings("pg-study", tmp_path / "runs" / "tune" / "pg-study", storage=postgres)
    first = run_study(config, settings, base_dir=tmp_path)
    assert first.counts["complete"] + first.counts["pruned"] == 3
    assert not (settings.folder / "study.db").exists()  # nothing in SQLite
    stored = optuna.load_study(study_name="pg-study", storage=postgres.replace("postgresql://", "postgresql+psycopg://"))
    assert len(stored.trials) == 3 and stored.user_attrs["config_name"] == "tiny"
    more = run_study(config, TuneSettings("pg-study", settings.folder, storage=postgres, trials=5), base_dir=tmp_path)
    assert more.counts["complete"] + more.counts["pruned"] == 5  # the same study, two more trials


def test_a_study_database_that_cannot_be_opened_is_a_clear_error(postgres: str, tmp_path: Path) -> None:
    config = tiny(tmp_path, tune={"trials": 1, "space": {"model.members.0.leaves": {"low": 2, "high": 32}}})
    down = postgres.replace("postgres@", "postgres:s3cret@").rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(ConfigError) as caught:
        run_study(config, TuneSettings("x", tmp_path / "x", storage=down), base_dir=tmp_path)
    assert "cannot be opened" in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError, match="is not a database URL"):
        run_study(config, TuneSettings("x", tmp_path / "x", storage="not a url"), base_dir=tmp_path)
