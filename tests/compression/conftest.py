"""A small trained bundle to export and compress, and labelled rows to judge it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelmill.api import Pipeline
from tests.conftest import base_config, make_frame


@pytest.fixture(scope="session")
def rows_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled rows of the tiny pipeline's data that it was not trained on."""
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    make_frame(rows=400, seed=5).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rows the tiny bundle was trained on (its config's data.csv is not where tests run)."""
    path = tmp_path_factory.mktemp("train") / "train.csv"
    make_frame(rows=600, seed=4).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny mlp over numbers, categories, a date and text (tests/conftest.py)."""
    config = base_config(model={"type": "mlp", "hidden": [128, 64]},
                         training={"epochs": 8, "batch_size": 64, "progress": False, "seed": 0})
    return Pipeline(config).fit(make_frame(rows=600, seed=4)).save(tmp_path_factory.mktemp("bundles") / "tiny")


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``modelmill ARGS`` in this process: its exit code and its output, whitespace normalised."""
    import sys

    from modelmill.cli import main

    monkeypatch.setattr(sys, "argv", ["modelmill", *args])
    monkeypatch.setenv("COLUMNS", "10000")  # one line per message: a long path is never broken
    from rich.console import Console

    # the commands' consoles took their width when first imported (by whichever test came first)
    for module in [m for name, m in sys.modules.items() if name.startswith("modelmill.cli")]:
        for console in [c for c in vars(module).values() if isinstance(c, Console)]:
            monkeypatch.setattr(console, "_width", 10000)
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), " ".join((captured.out + captured.err).split())
