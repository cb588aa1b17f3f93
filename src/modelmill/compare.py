"""``modelmill compare``: several model variants of one config, trained on the same split,
in one table — test metrics, training time, time per epoch, prediction latency per record
and model size. It answers "a general pretrained model or a specialised one?" with numbers
on the user's own data.

A variant is a named change to the config (``VARIANTS``); each one is a whole pipeline
run whose bundle is kept, so the winner can be served as it is.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelmill.api import Pipeline
from modelmill.config.io import parse_config
from modelmill.config.schema import PipelineConfig, TextFeatureConfig
from modelmill.errors import ConfigError, ModelError, ModelmillError
from modelmill.evaluation.report import render_report
from modelmill.files import atomic_open
from modelmill.registry import Registry

if TYPE_CHECKING:
    from modelmill.tracking.run import TrackedRun
    from modelmill.training import Callback


@dataclass(frozen=True)
class Variant:
    description: str
    change: Callable[[dict[str, Any], PipelineConfig], None]  # edits the config's plain data in place


VARIANTS: Registry[Variant] = Registry("comparison variant")

SHOWN_METRICS = {
    "binary": ["accuracy", "roc_auc", "f1", "log_loss"],
    "category": ["accuracy", "f1_macro", "log_loss"],
    "number": ["rmse", "mae", "r2"],
}


def _text_features(raw: dict[str, Any], config: PipelineConfig, name: str) -> list[dict[str, Any]]:
    """The raw entries of the features that take a text encoder."""
    texts = [raw["features"][i] for i, f in enumerate(config.features) if isinstance(f, TextFeatureConfig)]
    if not texts:
        raise ConfigError(f"the variant {name!r} changes the text encoder, and the config has no text feature; "
                          "compare model types instead, e.g. --models linear,mlp", path="--models")
    return texts


def _encoder_variant(name: str, encoder: dict[str, Any], description: str, *, tunes: bool = False) -> None:
    def change(raw: dict[str, Any], config: PipelineConfig) -> None:
        for feature in _text_features(raw, config, name):
            spec = dict(encoder)
            if spec["type"] == "pretrained":
                spec["model"] = config.compare.pretrained_model
                spec["pool_layers"] = config.compare.pool_layers  # the same head input for every tuning
                if spec["tune"] != "frozen":
                    spec["head_epochs"] = config.compare.head_epochs
            feature["encoder"] = spec
        if raw["model"]["type"] == "tfidf_logistic":  # an encoder needs a trained head
            raw["model"] = {"type": "mlp"}
        if tunes:
            raw["training"]["epochs"] = min(raw["training"]["epochs"], config.compare.finetune_epochs)

    VARIANTS.add(name, Variant(description, change))


def _model_variant(name: str, model: dict[str, Any], description: str) -> None:
    def change(raw: dict[str, Any], config: PipelineConfig) -> None:
        raw["model"] = dict(model)

    VARIANTS.add(name, Variant(description, change))


VARIANTS.add("config", Variant("the config as it is", lambda raw, config: None))
_model_variant("tfidf_lr", {"type": "tfidf_logistic"}, "TF-IDF of tokens and token pairs + logistic regression")
_model_variant("linear", {"type": "linear"}, "linear model on the encoded features")
_model_variant("mlp", {"type": "mlp"}, "multilayer perceptron (default size)")
_model_variant("gbdt", {"type": "gbdt"}, "gradient-boosted trees (LightGBM) on the raw columns")
for _name, _description in [("bag", "bag of embeddings"), ("cnn", "1-D CNN"), ("rnn", "bidirectional LSTM"),
                            ("transformer", "small transformer")]:
    _encoder_variant(_name, {"type": _name}, f"from scratch: {_description} + the config's head")
_encoder_variant("frozen", {"type": "pretrained", "tune": "frozen"},
                 "general encoder, frozen (embeddings computed once) + head")
_encoder_variant("finetune", {"type": "pretrained", "tune": "last_layers", "layers": 2},
                 "general encoder + head: the head trained alone first, then the last 2 blocks tuned with it",
                 tunes=True)
_encoder_variant("lora", {"type": "pretrained", "tune": "lora"},
                 "general encoder + head: the head trained alone first, then LoRA-tuned with it", tunes=True)
_encoder_variant("full", {"type": "pretrained", "tune": "full"},
                 "general encoder + head: the head trained alone first, then every weight tuned with it", tunes=True)


def default_variants(config: PipelineConfig) -> list[str]:
    if config.compare.models:
        return list(config.compare.models)
    if any(isinstance(f, TextFeatureConfig) for f in config.features):
        return ["tfidf_lr", "cnn", "frozen", "finetune"]
    return ["linear", "mlp", "gbdt", "config"]


def variant_config(config: PipelineConfig, name: str) -> PipelineConfig:
    variant = VARIANTS.get(name, path="--models")
    raw = config.model_dump(mode="json")
    variant.change(raw, config)
    raw["name"] = f"{config.name}-{name}"
    return parse_config(raw, origin=f"variant {name!r} of {config.name}")


def variant_configs(config: PipelineConfig, names: list[str]) -> dict[str, PipelineConfig]:
    """Each named variant's config; an unknown name or a variant that does not fit the
    config fails here, before anything is trained or written."""
    return {name: variant_config(config, name) for name in names}


def compare(config: PipelineConfig, configs: dict[str, PipelineConfig], out_dir: Path, *, base_dir: Path,
            compress: list[str] = [], progress: Callable[[str], None] = lambda message: None,  # noqa: B006
            tracked: TrackedRun | None = None) -> list[dict[str, Any]]:
    """Train every variant (``variant_configs``) on the same data and split; one result row
    per variant (a variant that fails on the user's input gets its error instead of
    numbers), and one per compression method of each (``modelmill compress`` behind its
    default gate; a refused one gets the gate's figures). Writes ``comparison.json``,
    ``comparison.csv`` and ``report.html`` into ``out_dir``. With ``tracked`` (the
    comparison's MLflow run) each variant is a run nested in it, and the three files its
    artefacts."""
    frame = Pipeline(config, base_dir=base_dir).read()
    sample = frame.sample(n=min(config.compare.latency_rows, len(frame)), random_state=0)
    rows: list[dict[str, Any]] = []
    for name, variant in configs.items():
        progress(f"{name}: {VARIANTS.get(name).description}")
        run = _variant_run(tracked, variant, name)
        try:
            rows.append(_run_variant(name, variant, frame, sample, out_dir / name, base_dir,
                                     [run.callback()] if run is not None else []))
        except ModelmillError as exc:
            rows.append({"variant": name, "description": VARIANTS.get(name).description, "error": str(exc)})
        except BaseException as exc:  # Ctrl-C, or a fault of ours: the comparison stops here
            if run is not None:
                run.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        _log_variant(run, rows[-1], whole=variant.tracking.log_bundle)
        progress(f"{name}: done")
        if "error" not in rows[-1]:
            trained = Path(rows[-1]["bundle"])
            for method in compress:
                progress(f"{name}+{method}: compressing")
                rows.append(_compressed(name, method, trained, sample, out_dir / name / method, base_dir))
                _log_variant(_variant_run(tracked, variant, f"{name}+{method}", {"variant": name,
                                                                                  "compression.method": method}),
                             rows[-1], whole=variant.tracking.log_bundle)
    _write(out_dir, config, rows)
    if tracked is not None:
        for file in ("comparison.json", "comparison.csv", "report.html"):
            tracked.log_file(out_dir / file)
    return rows


def _variant_run(parent: TrackedRun | None, config: PipelineConfig, name: str,
                 params: dict[str, Any] | None = None) -> TrackedRun | None:
    """A variant's MLflow run, nested in the comparison's (params: its resolved config)."""
    if parent is None:
        return None
    from modelmill.tracking.run import TrackedRun

    return TrackedRun.start(config, action="variant", run_name=name, parent=parent, params=params)


LOGGED_FIGURES = ("fit_seconds", "prepare_seconds", "epochs", "seconds_per_epoch", "latency_ms_per_record",
                  "latency_ms_single_record", "bundle_mb", "trainable_parameters")


def _log_variant(run: TrackedRun | None, row: dict[str, Any], *, whole: bool) -> None:
    """A variant's row into its run: the test metrics and figures of the table, its bundle's
    tags and report (the whole bundle with ``whole``); FAILED with the error, or the refusal
    of a compression's gate."""
    if run is None:
        return
    from modelmill.bundle import read_bundle
    from modelmill.tracking import tags
    from modelmill.tracking.client import redact

    run.log_metrics({k: row[k] for k in LOGGED_FIGURES if k in row})
    if "bundle" in row:  # its metrics.json: the row's test metrics
        run.log_bundle(read_bundle(row["bundle"]), whole=whole)
    why = row.get("error") or row.get("refused")
    if why:
        run.set_tags({tags.ERROR if "error" in row else tags.REFUSED: redact(str(why))})
    run.finish("FAILED" if "error" in row else "FINISHED")


def _run_variant(name: str, config: PipelineConfig, frame: pd.DataFrame, sample: pd.DataFrame, run_dir: Path,
                 base_dir: Path, callbacks: list[Callback] | None = None) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(config, base_dir=base_dir, callbacks=callbacks or [])
    started = time.perf_counter()
    pipeline.fit(frame, run_dir=run_dir)
    fit_seconds = time.perf_counter() - started
    bundle = pipeline.save(run_dir / "bundle")
    result = pipeline.result_
    if result is None:
        raise ModelError(f"variant {name!r} finished fitting without a training result")
    trainable = pipeline.parts.maker.trained_parameters(pipeline.parts.model)
    return {
        "variant": name,
        "description": VARIANTS.get(name).description,
        "metrics": {k: v for k, v in pipeline.metrics_.items() if isinstance(v, float)},
        "fit_seconds": fit_seconds,
        "prepare_seconds": result.prepare_seconds,
        "epochs": result.epochs_run,
        "seconds_per_epoch": result.seconds / max(result.epochs_run, 1),
        **_latency(pipeline, sample),
        "bundle_mb": sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20,
        "trainable_parameters": trainable,
        "bundle": str(bundle),
    }


def _latency(pipeline: Pipeline, sample: pd.DataFrame) -> dict[str, float]:
    pipeline.predict(sample.head(1))  # one-time costs (lazy initialisation, first allocations) out of the timing
    started = time.perf_counter()
    pipeline.predict(sample)
    batch_ms = (time.perf_counter() - started) * 1000 / len(sample)
    singles = []
    for i in range(min(20, len(sample))):
        started = time.perf_counter()
        pipeline.predict(sample.iloc[[i]])
        singles.append((time.perf_counter() - started) * 1000)
    return {"latency_ms_per_record": batch_ms, "latency_ms_single_record": statistics.median(singles)}


def _compressed(name: str, method: str, parent: Path, sample: pd.DataFrame, run_dir: Path,
                base_dir: Path) -> dict[str, Any]:
    """A variant's bundle compressed with ``method``, judged on the same test split."""
    from modelmill.api import load
    from modelmill.compression.compress import METHODS, compress
    from modelmill.compression.gate import GateRefused

    row: dict[str, Any] = {"variant": f"{name}+{method}", "description": METHODS.get(method).description}
    started = time.perf_counter()
    try:
        bundle = compress(parent, run_dir / "bundle", method=method, base_dir=base_dir)
    except GateRefused as exc:
        return {**row, "refused": str(exc)}
    except ModelmillError as exc:
        return {**row, "error": str(exc)}
    pipeline = load(bundle)
    return {**row, "metrics": {k: v for k, v in pipeline.metrics_.items() if isinstance(v, float)},
            "fit_seconds": time.perf_counter() - started, **_latency(pipeline, sample),
            "bundle_mb": sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20,
            "bundle": str(bundle)}


COLUMNS = {
    "fit s": "wall time of the whole run: features, training (frozen embeddings included), evaluation; for a "
             "compressed variant (NAME+METHOD), of the compression and its gate",
    "s/epoch": "training seconds per epoch (a solver's fit counts as one epoch)",
    "ms/record": "prediction time per record, predicting the latency sample in one call",
    "ms 1 record": "median time of a one-record prediction (20 calls)",
    "MB": "size of the bundle on disk",
    "trained weights": "numbers fitted on this data (frozen pretrained weights excluded)",
}


def table_rows(task: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Column headings and cells of the comparison, for the terminal and the report."""
    metrics = SHOWN_METRICS[task]
    headings = ["variant", *metrics, "fit s", "s/epoch", "ms/record", "ms 1 record", "MB", "trained weights"]
    cells = []
    for row in rows:
        if "error" in row or "refused" in row:
            why = f"failed: {row['error']}" if "error" in row else f"refused: {row['refused']}"
            cells.append([row["variant"], why, *[""] * (len(headings) - 2)])
            continue
        compressed = "epochs" not in row  # a compression: its time, no epochs, weights not counted
        cells.append([
            row["variant"], *[_number(row["metrics"].get(m)) for m in metrics],
            f"{row['fit_seconds']:.1f}", "" if compressed else f"{row['seconds_per_epoch']:.2f}",
            f"{row['latency_ms_per_record']:.3f}", f"{row['latency_ms_single_record']:.1f}", f"{row['bundle_mb']:.2f}",
            "" if compressed else f"{row['trainable_parameters']:,}",
        ])
    return headings, cells


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _write(out_dir: Path, config: PipelineConfig, rows: list[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    task = config.target.type
    headings, cells = table_rows(task, rows)
    table = pd.DataFrame(cells, columns=headings)
    with atomic_open(out_dir / "comparison.json", "w") as handle:
        json.dump(rows, handle, indent=2)
    with atomic_open(out_dir / "comparison.csv", "w") as handle:
        table.to_csv(handle, index=False)
    described = {row["variant"]: row["description"] for row in rows}
    html = render_report(title=f"{config.name}: comparison of model variants", metrics={}, plots={},
                         sections={"Comparison on the test split": table, "Variants": described, "Columns": COLUMNS},
                         config_yaml=None)
    with atomic_open(out_dir / "report.html", "w") as handle:
        handle.write(html)
