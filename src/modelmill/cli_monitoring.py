"""The commands after deployment: ``log export``, ``log labels``, ``log decisions``,
``monitor``, ``dashboard``, ``retrain`` and ``watch``, registered on the app of
:mod:`modelmill.cli` by :func:`register` (this module does not import that one, so that
``python -m modelmill.cli`` registers them on the app it runs)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)
LogUrl = Annotated[str, typer.Option("--log", help="The prediction log: sqlite:///monitor.db or postgresql://….")]

Versions = Annotated[Path | None, typer.Option("--versions", help="The folder of versions (1/, 2/, …) the champion "
                                               "is in and the challenger is promoted to; or, instead, "
                                               "monitoring.retrain.registry: models:/NAME@ALIAS in the config "
                                               "(the MLflow model registry).")]
Serve = Annotated[str | None, typer.Option("--serve", help="The running service to reload (its admin token in the "
                                           "environment: serving.admin_token_env, MODELMILL_ADMIN_TOKEN).")]
Runs = Annotated[Path, typer.Option(help="Folder of the runs (the challengers' bundles).")]


def log_export(
    log: LogUrl,
    output: Annotated[Path, typer.Option("--output", "-o", help="A .parquet or .csv file to write.")],
    since: Annotated[str | None, typer.Option(help="From this date or time (UTC), e.g. 2026-12-01.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time (UTC).")] = None,
    labelled: Annotated[bool, typer.Option("--labelled", help="Only records with a label.")] = False,
) -> None:
    """Logged records (inputs, predictions and labels) as a table, for retraining and monitoring."""
    from modelmill.monitoring.export import export_log

    done = export_log(log, output, since=since, until=until, labelled_only=labelled)
    err.print(f"wrote {done.rows} records ({done.labelled} labelled) to {done.path}")


def log_labels(
    data: Annotated[Path, typer.Argument(help="A CSV/Parquet file: request_id and row (or --key) and the label.")],
    log: LogUrl,
    value: Annotated[str | None, typer.Option(help="The label column (default: the target's name, or label).")] = None,
    key: Annotated[str | None, typer.Option(help="Join by this record key column (serving.log.key_column) "
                                            "instead of request_id and row.")] = None,
) -> None:
    """Add labels that arrived later to the prediction log."""
    from collections import Counter

    from modelmill.monitoring.export import add_labels

    results = add_labels(log, data, value_column=value, key_column=key)
    counts = Counter(result["status"] for result in results)
    out.print(f"{counts['stored']} labels stored, {counts['unknown']} unknown (no such prediction logged"
              f"{' yet; kept' if key is None else ''})", highlight=False)


class FailOn(str, Enum):
    latest = "latest"
    any = "any"


def monitor(
    model: Annotated[Path, typer.Argument(help="The bundle that served the log, or its folder of versions "
                                          "(the newest is the reference).")],
    log: LogUrl,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.html and summary.json.")] = Path(
        "monitoring"),
    window: Annotated[str | None, typer.Option(help="Rows per window (1000) or a duration (30m, 6h, 1d, 1w); "
                                               "default: monitoring.window of the bundle's config.")] = None,
    metric: Annotated[str | None, typer.Option(help="The metric followed (default: monitoring.decay.metric).")] = None,
    since: Annotated[str | None, typer.Option(help="From this date or time (UTC), e.g. 2026-12-01.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date or time (UTC).")] = None,
    version: Annotated[str | None, typer.Option(help="The version of a folder of versions to judge against "
                                                "(default: the newest).")] = None,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 3 for an alarm in the newest window (latest) or in "
                                            "any window (any).")] = "latest",  # type: ignore[assignment]
) -> None:
    """Drift, data quality and performance of the logged records against the bundle: report.html
    and summary.json (its schema: docs/monitor-summary.schema.json). Exit 3 when an alarm fires
    in the newest window (--fail-on any: in any window)."""
    from modelmill.files import atomic_open
    from modelmill.monitoring.export import parse_time
    from modelmill.monitoring.report import write_monitor_report
    from modelmill.monitoring.watch import monitor_log

    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    summary = monitor_log(model, log, window=window, metric=metric, since=start, until=end, version=version)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_open(output / "summary.json", "w", encoding="utf-8") as stream:
        stream.write(summary.model_dump_json(indent=2) + "\n")
    report = write_monitor_report(summary, output / "report.html")
    table = Table(title=f"{summary.model.name} v{summary.model.version}: {len(summary.windows)} windows of "
                  f"{summary.settings.window}")
    for heading in ("column", "score", "windows drifted"):
        table.add_column(heading, justify="left" if heading == "column" else "right")
    for ranked in summary.ranking:
        table.add_row(escape(ranked.column), f"{ranked.score:.3f}", str(ranked.windows_drifted))
    out.print(table)
    for alarm in summary.alarms:
        err.print(f"[bold red]alarm[/] window {alarm.window}, {alarm.kind}: {escape(alarm.message)}", highlight=False)
    out.print(f"summary: {output / 'summary.json'}")
    out.print(f"report: {report}")
    if summary.latest_alarm or (fail_on == FailOn.any and summary.alarm):
        raise typer.Exit(3)


def dashboard(
    models: Annotated[Path, typer.Option("--models", help="The bundle, or the folder of its versions.")],
    log: LogUrl,
    host: Annotated[str, typer.Option(help="Interface (loopback by default; another needs the token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8050,
    token_env: Annotated[str, typer.Option(help="Environment variable holding the access token.")] =
        "MODELMILL_DASHBOARD_TOKEN",
    window: Annotated[str | None, typer.Option(help="Rows per window or a duration (default: the config's).")] = None,
    metric: Annotated[str | None, typer.Option(help="The metric followed (default: the config's).")] = None,
    version: Annotated[str | None, typer.Option(help="The version to judge the log against (default: the "
                                                "newest).")] = None,
) -> None:
    """A read-only web page of the model's versions, traffic, drift, performance and alarms."""
    from modelmill.monitoring.dashboard import run_dashboard

    run_dashboard(models, log, host=host, port=port, token_env=token_env, window=window, metric=metric,
                  version=version)


def retrain(
    config: Annotated[Path, typer.Argument(help="The champion's config (its bundle keeps it as config.yaml).")],
    log: LogUrl,
    versions: Versions = None,
    serve: Serve = None,
    runs: Runs = Path("runs"),
    since: Annotated[str | None, typer.Option(help="Only labelled records logged from this date or time "
                                              "(UTC).")] = None,
    shadow_first: Annotated[bool, typer.Option("--shadow-first", help="Run a challenger that passes in shadow "
                                               "beside the champion first; a later retrain (or watch) promotes it "
                                               "when its live records agree.")] = False,
) -> None:
    """Train a challenger on the original data and the newly labelled records; promote it into the
    next version folder, or (monitoring.retrain.registry) register it and move the registered
    model's alias to it, and reload the service, only when it beats the champion on the newest
    labelled records and holds up on the original test split. Every decision is recorded in the
    log store (modelmill log decisions). Exit 0 for a decision (promoted, refused, in shadow),
    2 when the input was wrong or the service would not load the challenger."""
    from modelmill.monitoring.export import parse_time
    from modelmill.retraining import retrain as run

    decision = run(config, log_url=log, versions=versions, serve=serve, runs=runs, shadow_first=shadow_first,
                   since=parse_time(since, "--since"), say=lambda line: err.print(escape(line), highlight=False))
    show_decision(decision.outcome, decision.reason, decision.challenger, decision.figures)
    if decision.bundle is not None:
        out.print(f"challenger: {decision.bundle}", soft_wrap=True)
    if decision.outcome == "failed":  # the service would not take the challenger: recorded, and an error here
        raise typer.Exit(2)


def watch(
    config: Annotated[Path, typer.Argument(help="The champion's config (monitoring.retrain.triggers).")],
    log: LogUrl,
    versions: Versions = None,
    serve: Serve = None,
    runs: Runs = Path("runs"),
    shadow_first: Annotated[bool, typer.Option("--shadow-first", help="Challengers run in shadow before "
                                               "promotion.")] = False,
    check_every: Annotated[str | None, typer.Option(help="How often the triggers are checked (default: "
                                                    "monitoring.retrain.triggers.check_every).")] = None,
    checks: Annotated[int | None, typer.Option(help="Stop after this many checks (default: run until "
                                               "stopped).")] = None,
) -> None:
    """Check the retraining triggers (drift and decay alarms, new labels, a schedule) in a loop and
    retrain when one fires; Ctrl-C stops."""
    from modelmill.retraining.watch import Watcher

    watcher = Watcher(config, log_url=log, versions=versions, serve=serve, runs=runs, shadow_first=shadow_first,
                      check_every=check_every, say=lambda line: err.print(escape(line), highlight=False))
    try:
        watcher.run(checks=checks)
    except KeyboardInterrupt:
        if watcher.busy:  # a promotion cut in half would leave a version neither served nor audited
            err.print("stopping: the retraining that runs finishes first (Ctrl-C again kills it)")
            watcher.wait_current()
        err.print("stopped")


def log_decisions(
    log: LogUrl,
    latest: Annotated[int | None, typer.Option(help="Only the newest this many.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every field, as JSON lines.")] = False,
) -> None:
    """The retraining decisions: promoted, refused (why, with the figures), in shadow, failed."""
    from modelmill.monitoring.export import open_log

    store = open_log(log)
    try:
        decisions = store.decisions(latest=latest)
    finally:
        store.close()
    if as_json:
        for decision in decisions:
            typer.echo(json.dumps(decision, sort_keys=True))
        return
    if not decisions:
        out.print("no retraining decisions yet")
        return
    table = Table(title="retraining decisions", caption="gain: the challenger's over the champion on the held-back "
                  "recent records, with its 95% interval; test: both on the original test split")
    for heading in ("id", "decided (UTC)", "trigger", "outcome", "versions", "gain", "test: new / old"):
        table.add_column(heading, no_wrap=heading in ("id", "outcome", "versions"))
    for decision in decisions:
        recent = decision["figures"].get("recent") or decision["figures"].get("live") or {}
        test = decision["figures"].get("original_test") or {}
        versions = f"{decision['champion'] or ''} → {decision['challenger']}" if decision["challenger"] \
            else str(decision["champion"] or "")
        table.add_row(str(decision["id"]), _when(decision["decided_at"]), escape(decision["trigger"]),
                      decision["outcome"], escape(versions), _gain(recent), _test(test))
    out.print(table)
    for decision in decisions:  # the reasons are sentences: below the table, not folded into a column
        out.print(f"{decision['id']} {decision['outcome']}: {escape(decision['reason'])}", highlight=False)


def register(app: typer.Typer, log_app: typer.Typer) -> None:
    log_app.command("export")(log_export)
    log_app.command("labels")(log_labels)
    log_app.command("decisions")(log_decisions)
    app.command()(monitor)
    app.command()(dashboard)
    app.command()(retrain)
    app.command()(watch)


def show_decision(outcome: str, reason: str, challenger: str | None, figures: dict[str, Any]) -> None:
    colour = {"promoted": "green", "shadowing": "cyan", "waiting": "cyan"}.get(outcome, "red")
    title = f"[bold {colour}]{outcome}[/]" + (f" version {escape(challenger)}" if challenger else "")
    err.print(f"{title}: {escape(reason)}", highlight=False)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _gain(figures: dict[str, Any]) -> str:
    if "gain" not in figures:
        return ""
    interval = f" [{figures['low']:+.3f}, {figures['high']:+.3f}]" if figures.get("low") is not None else ""
    return f"{figures['metric']} {figures['gain']:+.4f}{interval}"


def _test(figures: dict[str, Any]) -> str:
    if "challenger" not in figures:
        return ""
    return f"{figures['challenger']:.4f} / {figures['champion']:.4f}"
