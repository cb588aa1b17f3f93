"""What every command prints through: the consoles (results on standard output, progress and
messages on standard error), the metrics table, and a command's log file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


def summary(metrics: dict[str, Any], *, title: str) -> None:
    """A run's float metrics as a two-column table on standard output."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    out.print(table)


@contextmanager
def log_to(path: Path, key: bytes | None = None) -> Iterator[None]:
    """The ``modelmill`` logger's lines into ``path`` too (a sealed log with ``key``)."""
    from modelmill.encryption import SealedLogHandler

    handler = SealedLogHandler(path, key, path.name) if key is not None else logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("modelmill")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
