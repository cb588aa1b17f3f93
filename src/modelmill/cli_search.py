"""``modelmill compare`` and ``modelmill tune``: several configs trained on the same split, and
the search for the best one. Registered on the app of :mod:`modelmill.cli` by :func:`register`
(as the monitoring commands are), so this module does not import that one."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelmill.cli_output import err, log_to, out, summary
from modelmill.errors import ConfigError


class TuneBackend(str, Enum):
    """Where the trials of a search run: one after another in this process, or side by side on a Ray cluster."""

    local = "local"
    ray = "ray"


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1h30m``."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"--timeout {text!r} is not a duration; write it as 90s, 10m, 1h30m or a number of seconds")
    hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + secs
    if total <= 0:
        raise ConfigError(f"--timeout {text!r} must be above 0")
    return total


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        config: Annotated[Path, typer.Argument(help="The pipeline's YAML config.")],
        models: Annotated[str | None, typer.Option(
            "--models", "-m", help="Comma-separated variants: config, tfidf_lr, linear, mlp, gbdt, bag, cnn, rnn, "
            "transformer (from scratch), frozen, finetune, lora, full (the pretrained encoder). Default: "
            "compare.models of the config, else tfidf_lr,cnn,frozen,finetune for text.")] = None,
        runs: Annotated[Path, typer.Option(help="Folder of the runs.")] = Path("runs"),
        compress: Annotated[str | None, typer.Option(
            help="Comma-separated compression methods (int8, float16, bfloat16, prune): each variant compressed "
            "too, behind the default accuracy gate, as variants NAME+METHOD.")] = None,
    ) -> None:
        """Train several model variants on the same split; one table of test metrics, times,
        latency and size (also written as comparison.json/.csv and report.html)."""
        from modelmill.config import load_config

        checked = load_config(config)  # a wrong config fails here, before the heavy imports
        from modelmill.api import Pipeline
        from modelmill.compare import compare as run_compare, default_variants, table_rows, variant_configs
        from modelmill.runs import new_run_dir

        pipeline = Pipeline(checked, base_dir=config.parent)
        names = [m.strip() for m in models.split(",") if m.strip()] if models else default_variants(pipeline.config)
        configs = variant_configs(pipeline.config, names)  # a typo fails before a run folder exists
        methods = [m.strip() for m in compress.split(",") if m.strip()] if compress else []
        if methods:
            from modelmill.compression.compress import METHODS

            for method in methods:
                METHODS.get(method, path="--compress")
        from modelmill.tracking.session import check_tracking, tracking
        from modelmill.tracking.values import flatten

        check_tracking(pipeline.config)  # a wrong MLFLOW_TRACKING_URI fails before a run folder exists
        out_dir = new_run_dir(runs, f"{pipeline.config.name}-compare")
        err.print(f"comparing {', '.join(names)} in {out_dir}")
        params = {**flatten(pipeline.config.model_dump(mode="json")), "compare.variants": ",".join(names),
                  "compare.compress": ",".join(methods)}
        with log_to(out_dir / "compare.log"), tracking(pipeline.config, action="compare", base_dir=config.parent,
                                                        run_dir=out_dir, run_name=out_dir.name, params=params) as tracked:
            rows = run_compare(pipeline.config, configs, out_dir, base_dir=pipeline.base_dir, compress=methods,
                               progress=lambda message: err.print(escape(message), highlight=False), tracked=tracked)
        headings, cells = table_rows(pipeline.config.target.type, rows)
        table = Table(title=f"{pipeline.config.name}: model variants on the same split")
        for i, heading in enumerate(headings):
            table.add_column(heading, justify="left" if i == 0 else "right")
        for cells_of_row in cells:
            table.add_row(*(escape(c) for c in cells_of_row))
        needed = sum(max(len(h), *(len(c[i]) for c in cells)) + 3 for i, h in enumerate(headings)) + 1
        # the table at its natural width even past the terminal's: cut cells would hide the numbers
        Console(file=out.file, width=max(out.width, needed)).print(table)
        out.print(f"report: {out_dir / 'report.html'}")
        if tracked is not None and tracked.url and tracked.down is None:
            out.print(f"mlflow run: {tracked.url}", soft_wrap=True)
        if any("error" in row for row in rows):
            raise typer.Exit(2)

    @app.command()
    def tune(
        config: Annotated[Path, typer.Argument(help="The pipeline's YAML config (its tune: section, if any).")],
        trials: Annotated[int | None, typer.Option(min=1, help="Finished trials the study should hold "
                                                   "(default: tune.trials, 50).")] = None,
        timeout: Annotated[str | None, typer.Option(help="Time to start trials in: 90s, 10m, 1h30m or seconds "
                                                    "(default: tune.timeout, none).")] = None,
        study: Annotated[str | None, typer.Option(help="Study name (default: the config's name); the same name "
                                                  "resumes the study or joins another process on it.")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the best config "
                                                    "(default: RUNS/tune/STUDY/best.yaml).")] = None,
        runs: Annotated[Path, typer.Option(help="Folder of the runs; the study goes to RUNS/tune/STUDY/.")] = Path("runs"),
        storage: Annotated[str | None, typer.Option(help="Database of the study, a SQLAlchemy URL "
                                                    "(default: sqlite:///RUNS/tune/STUDY/study.db).")] = None,
        keep: Annotated[bool, typer.Option("--keep", help="Keep every trial's bundle (validation scores only).")] = False,
        final: Annotated[bool, typer.Option("--final/--no-final", help="Train the best config once more and score "
                                            "it on the test split.")] = True,
        pruning: Annotated[bool | None, typer.Option("--pruning/--no-pruning", help="Stop bad trials early "
                                                     "(default: tune.pruning).")] = None,
        backend: Annotated[TuneBackend, typer.Option(
            help="local: trials one after another here, the study in a database (resumable, shareable); ray: trials "
            "side by side on RAY_ADDRESS's cluster, or a private one, through Ray Tune (ASHA stops bad trials early; "
            "not resumable).")] = TuneBackend.local,
    ) -> None:
        """Search hyper-parameters (Optuna's TPE, pruning on validation curves) and write the best config."""
        from modelmill.config import load_config

        checked = load_config(config)  # a wrong config fails here, before the heavy imports
        from modelmill.tuning import tune as run_tune

        name = study or checked.name
        try:
            result = run_tune(checked, base_dir=config.parent, trials=trials,
                              timeout=_duration(timeout) if timeout is not None else None, study=study, runs=runs,
                              storage=storage, output=output, keep=keep, final=final, pruning=pruning,
                              backend=backend.value, progress=lambda message: err.print(escape(message), highlight=False),
                              track=True)
        except KeyboardInterrupt:
            if backend is TuneBackend.ray:  # Ray Tune's experiment is not resumed: see tuning/ray_search.py
                err.print(f"interrupted: the ray search of study {name!r} stopped; its trials are under "
                          f"{runs / 'tune' / name / 'ray'}, and a new command starts a new search")
            else:
                err.print(f"interrupted: study {name!r} keeps its finished trials, and the one cut short runs again; "
                          "the same command resumes it")
            raise typer.Exit(130) from None
        outcome = result.outcome
        if result.final is not None:
            if not result.repeatable:
                err.print(f"[yellow]warning:[/] the best config scored validation {outcome.metric} "
                          f"{result.final.metrics_.get(f'valid_{outcome.metric}')} when trained again, not "
                          f"{outcome.best_value:.6g} (a run that is not repeatable: see training.deterministic)")
            summary(result.final.metrics_, title=f"{name}: the best config on the test split")
        counts = outcome.counts
        untuned = f" (the untuned config: {outcome.untuned_value:.4f})" if outcome.untuned_value is not None else ""
        err.print(f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} "
                  f"failed; best trial {outcome.best_number}: validation {outcome.metric} {outcome.best_value:.4f}{untuned}")
        out.print(f"best config: {result.best_path}")
        out.print(f"report: {result.report_path}")
        tracked = result.tracked
        if tracked is not None and tracked.url and tracked.down is None:
            out.print(f"mlflow run: {tracked.url}", soft_wrap=True)
