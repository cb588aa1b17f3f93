"""``modelmill explain``: why the model decided, per record and per column, and which
columns matter overall; registered on the app of :mod:`modelmill.cli` by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelmill.cli_encryption import KeyFileOption, given_key
from modelmill.errors import ConfigError

out = Console()
err = Console(stderr=True)


MAPPED_RECORDS = 8  # records whose pictures and texts get maps (a picture's map takes about a second)


def _steps(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"--steps {text!r} must be auto or a whole number above 0")


def explain(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    data: Annotated[str, typer.Argument(help="Data file or URL of the records to explain.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the CSVs and the HTML page.")],
    records: Annotated[int, typer.Option(min=1, help="Explain the first N records.")] = 20,
    importance: Annotated[bool, typer.Option(
        help="Also rank the columns by permutation importance on labelled rows of DATA.")] = True,
    repeats: Annotated[int, typer.Option(min=1, help="Shuffles per column for the importance.")] = 5,
    importance_rows: Annotated[int, typer.Option(
        min=10, help="Labelled rows (drawn at random) the importance is scored on, at most.")] = 5000,
    steps: Annotated[str, typer.Option(
        help="Integrated Gradients' steps: auto (raised until completeness holds to 0.01) or a number.")] = "auto",
    method: Annotated[str, typer.Option(
        help="auto (the model's own), integrated_gradients, treeshap, linear or shapley_sampling.")] = "auto",
    key_file: KeyFileOption = None,
) -> None:
    """Per-record attributions per input column (attributions.csv), permutation importance
    (importance.csv) and a page of both (explanations.html); encrypted, for an encrypted bundle."""
    from modelmill.bundle import read_bundle

    # a wrong path, a damaged bundle or a wrong key fails here, before the heavy imports
    verified = read_bundle(bundle, given_key(key_file))
    from modelmill.api import from_bundle
    from modelmill.data.validate import check_columns
    from modelmill.explain import attributions, chosen_metric, importance as permutation_importance, write_explanations

    pipeline = from_bundle(verified)
    frame = pipeline.read(data)
    parts = pipeline.parts
    if importance and parts.target.name not in frame.columns:  # unlabelled rows: attributions only
        err.print(f"{data} has no {parts.target.name!r} column (the target): no permutation importance, which "
                  "scores labelled rows", highlight=False)
        importance = False
    check_columns(frame, [f.name for f in parts.features] + ([parts.target.name] if importance else []),
                  source=data)
    explanation = attributions(parts, frame.head(records), profile=pipeline.profile_ or None,
                               steps=_steps(steps), method=method, source=data)
    ranking = (permutation_importance(parts, frame, repeats=repeats, rows=importance_rows, source=data)
               if importance else None)
    from modelmill.explain.report import column_maps

    pictures, texts = column_maps(parts, frame.head(min(records, MAPPED_RECORDS)))
    folder = write_explanations(output, explanation, ranking, title=f"{pipeline.config.name}: explanations of {data}",
                                records=frame.head(records), metric=chosen_metric(parts) if importance else None,
                                pictures=pictures, texts=texts, key=pipeline.key_)
    worst = float(explanation.gap.max()) if len(explanation.gap) else 0.0
    out.print(f"explained {len(explanation.attributions)} records by {explanation.method} (largest completeness "
              f"gap {worst:.2g}): {folder}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(explain)
