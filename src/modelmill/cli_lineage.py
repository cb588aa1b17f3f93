"""``modelmill lineage BUNDLE``: where a bundle comes from, oldest first, and where MLflow has
each link (the run that logged it, the registered versions that hold it). A thin layer over
:func:`modelmill.tracking.lineage.chain` and :func:`~modelmill.tracking.lineage.mlflow_links`,
registered on the app of :mod:`modelmill.cli` by :func:`register`. MLflow is imported only
when a tracking URI is known; a server that does not answer is a warning, and the local chain
still prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelmill.cli_encryption import KeyFileOption, given_key

if TYPE_CHECKING:
    from modelmill.bundle import Bundle

out = Console()
err = Console(stderr=True)
SHORT = 12  # characters of a sha256 in the table (--json gives them whole)


def lineage(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts) instead of "
                                          "tables.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="The MLflow tracking server to look the chain up in (default: MLFLOW_TRACKING_URI; "
        "with neither, the local chain alone). Never the bundle's own tracking.uri: the bundle's maker does not "
        "choose where your MLflow credentials go.")] = None,
    key_file: KeyFileOption = None,
) -> None:
    """The bundle's chain, oldest first: what each link was (trained, compressed, exported,
    retrained, refreshed …), its hash, and for the bundle itself its data, config and what its
    last step recorded; with a tracking server, the MLflow run and registered versions of each."""
    from modelmill.bundle import read_bundle
    from modelmill.tracking.client import redact
    from modelmill.tracking.lineage import chain

    verified = read_bundle(bundle, given_key(key_file))  # a wrong path, a damaged bundle or a wrong key fails here
    entries = chain(verified)
    uri = _uri(verified, tracking_uri)
    links, warning = _links(uri, [e["sha256"] for e in entries], explicit=tracking_uri is not None)
    if warning:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if links is not None:
        for entry in entries:
            entry["mlflow"] = links.get(entry["sha256"], {"run": None, "versions": []})
    if as_json:
        document = {"bundle": str(verified.path), "tracking_uri": redact(uri) if uri else None,
                    "mlflow": links is not None, "warnings": [warning] if warning else [], "chain": entries}
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        return
    _print_chain(entries, verified.name, links is not None)
    _print_current(entries[-1])


def _uri(bundle: Bundle, given: str | None) -> str | None:
    """--tracking-uri, else MLFLOW_TRACKING_URI; never the bundle's config's tracking.uri (see
    :func:`~modelmill.tracking.client.bundle_tracking_uri`). A wrong scheme is a ConfigError (exit 2)."""
    from modelmill.tracking.client import bundle_tracking_uri

    return bundle_tracking_uri(given=given)


def _links(uri: str | None, digests: list[str], *, explicit: bool) -> tuple[dict[str, Any] | None, str]:
    """The MLflow links, or None and why not (an empty reason when no URI is set)."""
    if uri is None:
        return None, ""
    from modelmill.errors import ConfigError, TrackingError
    from modelmill.tracking.client import mlflow_client, quick_failure_defaults, redact
    from modelmill.tracking.lineage import mlflow_links

    quick_failure_defaults()  # a look-up beside the local chain: a dead server is given up on quickly
    try:
        return mlflow_links(mlflow_client(uri), digests), ""
    except ConfigError as exc:  # MLflow not installed: an error when asked for by name, else a note
        if explicit:
            raise
        return None, f"{exc}; the local chain follows"
    except TrackingError as exc:
        return None, (f"{exc}; the local chain follows. Fix: start the tracking server at {redact(uri)}, or give "
                      "the right one with --tracking-uri (or MLFLOW_TRACKING_URI)")


def _print_chain(entries: list[dict[str, Any]], name: str, tracked: bool) -> None:
    headings = ["", "action", "name", "created", "sha256", *(["MLflow run", "registered"] if tracked else [])]
    rows = []
    for number, entry in enumerate(entries, 1):
        cells = [f"{number}" + (" (this)" if entry["current"] else ""), entry["action"], entry["name"],
                 _when(entry["created_at"]), entry["sha256"][:SHORT]]
        if tracked:
            cells += [_run_cell(entry["mlflow"]["run"]), _versions_cell(entry["mlflow"]["versions"])]
        rows.append(cells)
    table = Table(title=f"{name}: lineage, oldest first")
    for heading in headings:
        table.add_column(heading)
    for cells in rows:
        table.add_row(*(escape(c) for c in cells))
    _wide(table, [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings)])


def _print_current(entry: dict[str, Any]) -> None:
    table = Table(title="this bundle")
    table.add_column("")
    table.add_column("value")
    rows = [("path", entry["path"]), ("sha256", entry["sha256"]),
            ("parent", entry["parent"] or "none (trained from data)"),
            ("task", entry["task"] or "?"), ("data source", entry["data_source"] or "not recorded"),
            ("data sha256", entry["data_sha256"] or "?"), ("config sha256", entry["config_sha256"] or "?"),
            ("modelmill", entry["modelmill_version"] or "?"),
            *((entry["action"] if i == 0 else "", line) for i, line in enumerate(entry["summary"]))]
    for label, value in rows:
        table.add_row(escape(label), escape(str(value)))
    _wide(table, [max(len(str(label)) for label, _ in rows), max(len(str(value)) for _, value in rows)])


def _wide(table: Table, widths: list[int]) -> None:
    """The table at its natural width even past the terminal's: a cut hash or run id would be wrong."""
    needed = sum(w + 3 for w in widths) + 1
    Console(file=out.file, width=max(out.width, needed, 120)).print(table)


def _when(created: Any) -> str:
    text = str(created or "?")
    return text[:19].replace("T", " ") if len(text) >= 19 and text[10:11] == "T" else text


def _run_cell(run: dict[str, Any] | None) -> str:
    if run is None:
        return "-"
    parent = f" (parent run {run['parent_run_id']})" if run.get("parent_run_id") else ""
    return f"{run['run_id']} {run['experiment']}/{run['run_name']}{parent}"


def _versions_cell(versions: list[dict[str, Any]]) -> str:
    return ", ".join(f"{v['name']} v{v['version']}" + "".join(f" @{a}" for a in v["aliases"])
                     for v in versions) or "-"


def register(app: typer.Typer) -> None:
    """Add ``lineage`` to the command line."""
    app.command("lineage")(lineage)
