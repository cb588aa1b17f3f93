"""``modelmill recommend refresh``: a recommend bundle's known items updated from new
interactions, without retraining, as a derived bundle; registered on the app of
:mod:`modelmill.cli` by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelmill.cli_tracking import TrackingUriOption
from modelmill.cli_encryption import KeyFileOption, given_key

out = Console()
err = Console(stderr=True)

recommend_app = typer.Typer(no_args_is_help=True, help="Recommend bundles: refresh their known items.")


@recommend_app.command()
def refresh(
    bundle: Annotated[Path, typer.Argument(help="A recommend bundle or run directory.")],
    data: Annotated[str, typer.Argument(help="File or URL of the new interactions (the config's columns).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the derived bundle.")],
    key_file: KeyFileOption = None,
    tracking_uri_option: TrackingUriOption = None,
) -> None:
    """Add new interactions to the bundle's known items (new users added, items the model does not
    know dropped with a warning, interactions it knows already skipped, so the same export twice
    changes nothing): served lists leave them out, and the two-tower ranks from them. The model is
    not retrained; the derived bundle records its parent. The output folder is checked first."""
    from modelmill.bundle import read_bundle
    from modelmill.cli_tracking import derived_tracking, log_derived
    from modelmill.errors import BundleError

    uri = derived_tracking(tracking_uri_option)  # a wrong URI fails here, before any work
    verified = read_bundle(bundle, given_key(key_file))  # a wrong path, a damaged bundle or a wrong key fails here
    if verified.task != "recommend":
        raise BundleError(f"{bundle} is a `task: {verified.task}` bundle; refresh updates the known items of a "
                          "`task: recommend` bundle. Fix: give the folder of a recommend bundle (or its run), "
                          "or retrain this one's model on the new data with `modelmill train`")
    from modelmill.recommending.pipeline import refresh_bundle

    derived = refresh_bundle(verified, data, output)
    out.print(f"bundle: {derived}")
    if uri is not None:  # a run of its own, whose tags link it to the run of the bundle it refreshed
        from modelmill.tracking.client import source_name

        log_derived(derived, action="refresh", run_name=f"refresh {source_name(data)}", given=tracking_uri_option,
                    params={"data": data})


def register(app: typer.Typer) -> None:
    app.add_typer(recommend_app, name="recommend")
