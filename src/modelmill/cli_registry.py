"""``modelmill register`` and ``modelmill promote``: the MLflow model registry; registered on the
app of :mod:`modelmill.cli` by :func:`register`. MLflow is imported only when one of them runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelmill.cli_encryption import KeyFileOption, given_key

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

TrackingUriOption = Annotated[str | None, typer.Option(
    "--tracking-uri", help="The MLflow tracking server holding the registry (default: MLFLOW_TRACKING_URI). "
    "Credentials come from MLflow's variables (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN).")]


def register_bundle(
    bundle: Annotated[Path, typer.Argument(help="A bundle, or a run directory holding one.")],
    name: Annotated[str, typer.Option("--name", help="The registered model (created when missing).")],
    tracking_uri: TrackingUriOption = None,
    description: Annotated[str | None, typer.Option(help="A description of the new version.")] = None,
    key_file: KeyFileOption = None,
) -> None:
    """Register a bundle as a new version of a registered model, and print its number.

    The bundle is verified first. Its files become the version's plain artefacts (no pickle, no
    code run on load): those of the MLflow run that logged it, when one did, else of a new
    `register` run. An encrypted bundle is registered as its sealed files (its key is needed
    here to verify it, and to serve it later, as usual).
    """
    from modelmill.tracking.client import redact, required_uri
    from modelmill.tracking.registry import check_name, register

    check_name(name)  # a name MLflow's searches cannot quote fails before any server is asked
    uri = required_uri(tracking_uri, "modelmill register")
    version = register(uri, bundle, name, description=description, key=given_key(key_file))
    err.print(f"registered {bundle} as version {version.version} of {name!r} at {redact(uri)}  ·  serve it: "
              f"modelmill serve models:/{name}/{version.version}  ·  promote it: modelmill promote {name} "
              f"{version.version} --alias champion", markup=False)
    out.print(version.version, markup=False)


def promote_version(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    version: Annotated[int, typer.Argument(help="Its version to point the alias at.", min=1)],
    alias: Annotated[str, typer.Option("--alias", help="The alias to set: champion, challenger, …")],
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Point an alias of a registered model at one of its versions (a server following
    models:/NAME@ALIAS switches on its next admin reload)."""
    from modelmill.tracking.client import required_uri
    from modelmill.tracking.registry import check_alias, check_name, promote

    check_name(name)
    check_alias(alias)  # a wrong alias fails before any server is asked
    uri = required_uri(tracking_uri, "modelmill promote")
    before = promote(uri, name, str(version), alias)
    was = "" if before is None else f" (was version {before})" if before != str(version) else " (already)"
    out.print(f"{name}@{alias} → version {version}{was}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("register")(register_bundle)
    app.command("promote")(promote_version)
