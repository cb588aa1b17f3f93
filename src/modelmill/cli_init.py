"""``modelmill init``: a commented config inferred from a data file, for any task.
Registered on the app of :mod:`modelmill.cli` by :func:`register` (as the build command is),
so this module does not import that one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from modelmill.errors import ConfigError

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        data: Annotated[str, typer.Argument(help="Data file or URL to infer the config from.")],
        target: Annotated[str | None, typer.Option("--target", "-t", help="The column to predict (or forecast); "
                                                   "not for recommend.")] = None,
        name: Annotated[str | None, typer.Option(help="Name of the runs (default: the file's stem).")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
        task: Annotated[str, typer.Option(help="predict: a label or number per row; forecast: the target's next "
                                          "steps in time, per series; recommend: top items per user from "
                                          "interactions.")] = "predict",
        horizon: Annotated[int | None, typer.Option(min=1, help="forecast: steps to forecast (default: from the step "
                                                    "between times).")] = None,
        user: Annotated[str | None, typer.Option(help="recommend: the user-id column (default: the one named like "
                                                 "it: user, customer_id, userId …).")] = None,
        item: Annotated[str | None, typer.Option(help="recommend: the item-id column (default: the one named like "
                                                 "it: item, sku, movieId …).")] = None,
    ) -> None:
        """Write a commented config inferred from the data."""
        from modelmill.data.infer_config import infer_config_with_warnings
        from modelmill.data.infer_forecast import infer_forecast_config
        from modelmill.data.infer_recommend import infer_recommend_config
        from modelmill.config.schema import DataConfig
        from modelmill.data.sources import read_table
        from modelmill.errors import did_you_mean

        tasks = ["predict", "forecast", "recommend"]
        if task not in tasks:
            raise ConfigError(f"expected predict, forecast or recommend, got {task!r}{did_you_mean(task, tasks)}",
                              path="--task")
        if horizon is not None and task != "forecast":
            raise ConfigError("a horizon is for forecasts. Fix: add --task forecast, or leave out --horizon",
                              path="--horizon")
        if (user is not None or item is not None) and task != "recommend":
            raise ConfigError("--user and --item name the columns of interactions. Fix: add --task recommend, or "
                              "leave them out", path="--user" if user is not None else "--item")
        if task == "recommend" and target is not None:
            raise ConfigError("recommendations have no target: they rank items per user. Fix: leave out --target "
                              "(name the columns with --user and --item if they are not found)", path="--target")
        if task != "recommend" and target is None:
            raise ConfigError(f"--task {task} needs the column to {task}. Fix: add --target COLUMN", path="--target")
        frame = read_table(DataConfig(source=data))
        if task == "recommend" or target is None:  # target is None only for recommend (checked above)
            result = infer_recommend_config(frame, source=data, user=user, item=item, name=name)
        elif task == "forecast":
            result = infer_forecast_config(frame, source=data, target=target, name=name, horizon=horizon)
        else:
            result = infer_config_with_warnings(frame, source=data, target=target, name=name)
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        text = result.text
        if output:
            _write(output, text)
            err.print(f"wrote {output}")
        else:
            sys.stdout.write(text)


def _write(output: Path, text: str) -> None:
    """Write the config atomically (a reader never sees half of it; an existing file is replaced)."""
    from modelmill.files import atomic_write_bytes

    if output.is_dir():
        raise ConfigError(f"{output} is a folder. Fix: give a file name, e.g. -o {output / 'config.yaml'}",
                          path="--output")
    folder = output.absolute().parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"cannot write {output}: {folder} {what}. Fix: create the folder first, or give a path "
                          "in an existing one", path="--output")
    try:
        atomic_write_bytes(output, text.encode("utf-8"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot write {output} ({reason}). Fix: give a path in an existing folder you can write "
                          "to (create the folder first)", path="--output") from None
