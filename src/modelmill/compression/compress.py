"""``modelmill compress``: a smaller or faster model as a derived bundle, behind an accuracy
gate. Each method (``METHODS``) says whether it applies to a bundle, and makes a candidate
model; the gate scores parent and candidate on the same labelled rows (the original test
split, or ``--data``) and refuses a candidate that loses more than ``max_drop``, writing
nothing. The derived bundle records the method, the figures before and after, the model's
size and its forward latency in its lineage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
import torch
from torch import nn

from modelmill.bundle import CONFIG, FEATURES, MAIN_MODEL, METRICS, MODEL_CARD, PLOTS, PROFILE, REPORT, Bundle, ModelFiles, derive, read_bundle, runtime_model
from modelmill.config.io import dump_config
from modelmill.errors import BundleError, ConfigError, EncryptionError, ModelError
from modelmill.predictor import RUNTIMES, Predictor
from modelmill.predictor.onnx import GRAPH
from modelmill.compression.gate import (Measured, artifacts_size, check_gate, gate_metric, measure,
                                        relative_metric)
from modelmill.predictor.output import prediction_profile
from modelmill.compression.graphs import GRAPH_WRITERS, check_graph, to_onnx
from modelmill.compression.rows import Rows, gate_rows, training_rows
from modelmill.registry import Registry

Say = Callable[[str], None]
MAX_DROP = 0.005  # the gate's default: half a point of accuracy or ROC-AUC (0.5% of a number target's error)
TRACE_ROWS = 64  # rows the exporter traces the model on
CALIBRATION_BATCHES = 8  # batches of 64 training rows that static int8 measures activations on


@dataclass(frozen=True)
class Options:
    """The settings of a compression (each method reads the ones it uses)."""

    sparsity: float = 0.5
    structured: bool = True
    finetune_epochs: int = 0
    int8: Literal["auto", "dynamic", "static"] = "auto"


@dataclass
class Job:
    """What a method works from: the parent bundle, its predictor, the settings, and the
    training rows when it needs them (read at most once)."""

    bundle: Bundle
    predictor: Predictor
    options: Options
    train: str | None
    gate: Rows
    say: Say
    base_dir: Path | None = None
    _training: Rows | None = field(default=None, repr=False)

    def training_rows(self) -> Rows:
        if self._training is None:
            self._training = training_rows(self.bundle, self.train, self.base_dir)
            self.say(f"training rows: {self._training.described}")
        return self._training


@dataclass
class Candidate:
    """A compressed model: its predictor, what the bundle keeps of it, and what was done."""

    predictor: Predictor
    model: ModelFiles
    details: dict[str, Any]
    config_yaml: str | None = None  # when the model's shape changed (structured pruning)
    features_state: dict[str, Any] | None = None  # when the features' fitted state changed with it


class Method(Protocol):
    description: str

    def check(self, bundle: Bundle, predictor: Predictor, options: Options) -> None:
        """Raise ModelError/ConfigError when the method does not apply to this bundle."""

    def apply(self, job: Job) -> Candidate: ...


METHODS: Registry[Method] = Registry("compression method")


# --------------------------------------------------------------------- checks


def _is_ensemble(predictor: Predictor) -> bool:
    return predictor.runtime.name == "torch" and bool(predictor.maker.submodels(predictor.model))


def _torch_only(bundle: Bundle, predictor: Predictor, method: str) -> None:
    """The method works on a float torch model; say what this bundle's model is otherwise."""
    if predictor.runtime.name != "torch":
        history = " → ".join([*(a.get("action", "?") for a in bundle.lineage.ancestors), bundle.lineage.action])
        raise ModelError(f"bundle {bundle.path} holds an ONNX graph already ({history}); {method} works on the "
                         "float model. Fix: compress the bundle it was made from (its lineage names it)")
    if _is_ensemble(predictor):
        raise ModelError(f"model type {predictor.config.model.type!r} is an ensemble of several models; {method} "
                         "does not compress ensembles. Fix: train one model type (mlp, gbdt …) and compress it")


# -------------------------------------------------------------------- int8


def _has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in module.modules())


class Int8:
    description = ("int8 weights (and activations) in an ONNX graph run by ONNX Runtime: dynamic for Linear "
                   "layers, static with calibration on training rows where there are convolutions")

    def check(self, bundle: Bundle, predictor: Predictor, options: Options) -> None:
        if bundle.encrypted:  # ONNX Runtime's quantiser reads and writes graphs by path only (static int8's
            # calibration too): the decrypted graph would lie in a temporary folder, in clear
            raise EncryptionError(f"bundle {bundle.path} is encrypted, and --method int8 would write its model in "
                                  "clear to a temporary folder (ONNX Runtime's quantiser works on files only). "
                                  "Fix: --method float16, bfloat16 or prune, which work in memory")
        _torch_only(bundle, predictor, "int8")
        model_type = predictor.config.model.type
        if model_type in GRAPH_WRITERS or predictor.maker.view != "encoded":
            raise ModelError(f"int8 applies to neural models; model type {model_type!r} keeps its own state (trees "
                             "hold thresholds, not weight matrices). Fix: --method prune (fewer trees), or "
                             "modelmill export for a faster runtime")

    def apply(self, job: Job) -> Candidate:
        predictor = job.predictor
        sample = materialised(predictor.inputs(job.gate.frame.iloc[:TRACE_ROWS]))
        # static int8 for convolutions over pictures; token inputs of varying length defeat
        # the calibration's shape inference, and their convolutions are small: dynamic
        sequences = any(f.sequence_lengths(x) is not None for f, x in zip(predictor.features, sample))
        static = job.options.int8 == "static" or (
            job.options.int8 == "auto" and _has_convolutions(predictor.model) and not sequences)
        graph = to_onnx(predictor, sample)
        check = check_graph(graph, predictor, materialised(predictor.inputs(job.gate.frame.iloc[:256])))
        if not check.passed:
            raise ModelError(f"the exported float graph differs from the model by {check.max_abs_diff:.2e} (more "
                             "than 1e-4): not quantised")
        from modelmill.compression.quantize import dynamic_int8, static_int8

        if static:
            rows = job.training_rows().frame.sample(n=min(64 * CALIBRATION_BATCHES, len(job.training_rows().frame)),
                                                    random_state=0)
            batches = [materialised(predictor.inputs(rows.iloc[i:i + 64])) for i in range(0, len(rows), 64)]
            quantised = static_int8(graph, batches)
        else:
            quantised = dynamic_int8(graph)
        candidate = _with_model(predictor, "onnxruntime", {GRAPH: quantised}, job.bundle.path)
        details = {"int8": "static" if static else "dynamic", "runtime": "onnxruntime",
                   "float_graph_check": check.as_json(),
                   **({"calibration_rows": sum(len(b[0]) for b in batches)} if static else {})}
        return Candidate(candidate, ModelFiles(predictor.config.model.type, "onnxruntime", {GRAPH: quantised}),
                         details)


# -------------------------------------------------------------- half weights


class HalfWeights:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.description = (f"weights stored in {dtype} (half the bytes), computed in float32; on the torch "
                            "runtime")

    def check(self, bundle: Bundle, predictor: Predictor, options: Options) -> None:
        _torch_only(bundle, predictor, self.dtype)
        if predictor.config.model.type in GRAPH_WRITERS or predictor.maker.view != "encoded":
            raise ModelError(f"{self.dtype} weights apply to neural models; model type "
                             f"{predictor.config.model.type!r} keeps no weight tensors. Fix: --method prune")

    def apply(self, job: Job) -> Candidate:
        from modelmill.compression.quantize import half_weights

        predictor = job.predictor
        artifacts = half_weights(job.bundle.model_artifacts(), self.dtype, where=job.bundle.path)
        candidate = _with_model(predictor, "torch", artifacts, job.bundle.path)
        return Candidate(candidate, ModelFiles(predictor.config.model.type, "torch", artifacts),
                         {"weights": self.dtype, "computed_in": "float32", "runtime": "torch"})


def _with_model(predictor: Predictor, runtime: str, artifacts: dict[str, bytes], where: Path) -> Predictor:
    """The predictor with another model in place of its own, loaded as a bundle's is."""
    load = RUNTIMES.get(runtime)
    return Predictor(predictor.config, predictor.features, predictor.target,
                     load(predictor.maker, predictor.features, predictor.target, artifacts, where), predictor.maker)


# ------------------------------------------------------------------- pruning


class Prune:
    description = ("magnitude pruning: whole neurons and channels (structured: the model really shrinks) or "
                   "single weights (--unstructured), optionally fine-tuned; for gbdt, fewer trees")

    def check(self, bundle: Bundle, predictor: Predictor, options: Options) -> None:
        _torch_only(bundle, predictor, "pruning")
        if not 0 < options.sparsity < 1:
            raise ConfigError(f"--sparsity {options.sparsity} must be between 0 and 1 (the share of neurons, "
                              "channels, weights or trees removed)", path="--sparsity")
        from modelmill.compression.quantize import reduced_precision

        if predictor.config.model.type not in GRAPH_WRITERS and reduced_precision(bundle.model_artifacts(),
                                                                                 where=bundle.path):
            raise ModelError("this bundle's weights are stored in half precision; pruning would write them "
                             "back in float32. Fix: prune the float32 bundle, then reduce the precision")

    def apply(self, job: Job) -> Candidate:
        predictor, options = job.predictor, job.options
        if predictor.config.model.type == "gbdt":
            from modelmill.compression.trees import prune_trees

            pruned_predictor, details = prune_trees(predictor, sparsity=options.sparsity)
            return Candidate(pruned_predictor, _model_files(pruned_predictor), details)
        from modelmill.compression.finetune import FineTuning
        from modelmill.compression.prune import prune

        # the training rows always: with 0 epochs the batch-norm statistics are still measured
        # again on them, which pruning shifts (half the channels of the MNIST CNN: 43% test
        # accuracy without, 95.7% with, 99.1% after one epoch of fine-tuning)
        train, valid = _train_valid(predictor, job.training_rows().frame)
        finetune = FineTuning(train, valid, options.finetune_epochs, encrypted=job.bundle.encrypted)
        pruned = prune(predictor, sparsity=options.sparsity, structured=options.structured, finetune=finetune)
        config_yaml = dump_config(pruned.predictor.config) if pruned.predictor.config != predictor.config else None
        state = pruned.predictor.feature_state()
        return Candidate(pruned.predictor, _model_files(pruned.predictor), pruned.details, config_yaml,
                         state if state != predictor.feature_state() else None)


METHODS.add("int8", Int8())
METHODS.add("float16", HalfWeights("float16"))
METHODS.add("bfloat16", HalfWeights("bfloat16"))
METHODS.add("prune", Prune())


def materialised(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Input tensors with a streamed image column decoded (the exporter and the quantiser's
    calibration take plain tensors)."""
    from modelmill.data.image_stream import is_lazy

    return [x[0:len(x)] if is_lazy(x) else x for x in inputs]


def _model_files(predictor: Predictor) -> ModelFiles:
    return ModelFiles(predictor.config.model.type, predictor.maker.runtime, predictor.maker.save(predictor.model))


def _train_valid(predictor: Predictor, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from modelmill.data.split import split_rest

    split = predictor.config.data.split
    settings = split if split.valid > 0 else split.model_copy(update={"valid": 0.1})
    return split_rest(frame, settings, target=predictor.target.name, classify=predictor.target.task != "number")


# --------------------------------------------------------------------- run


def compress(bundle_path: str | Path, output: str | Path, *, method: str, options: Options | None = None,
             data: str | None = None, train: str | None = None, max_drop: float | None = None,
             metric: str | None = None, base_dir: Path | None = None, say: Say = lambda message: None,
             key: bytes | None = None) -> Path:
    """Compress the bundle at ``bundle_path`` into a new bundle at ``output``. ``base_dir``:
    where the bundle's relative data sources are read from (default: the current folder).
    ``key``: an encrypted bundle's (default: the environment's); the new bundle is sealed with it.

    Raises:
        GateRefused: the candidate lost more than ``max_drop``; nothing was written.
        ModelError, ConfigError: the method does not apply to this bundle.
        BundleError: the bundle is damaged, or ``output`` holds files already.
    """
    options = options or Options()
    max_drop = MAX_DROP if max_drop is None else max_drop
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} already exists; a compressed bundle goes to a new folder. Fix: choose another -o")
    if max_drop < 0:
        raise ConfigError(f"--max-drop {max_drop} must be 0 or more", path="--max-drop")
    parent = read_bundle(bundle_path, key)
    chosen = METHODS.get(method, path="--method")
    predictor = Predictor.from_bundle(parent)
    chosen.check(parent, predictor, options)
    name = gate_metric(predictor, metric)
    rows = gate_rows(parent, data, base_dir)
    say(f"judging on {rows.described}, by {name}")
    before = measure(predictor, rows.frame, name, artifacts_size(parent.model_artifacts()))
    candidate = chosen.apply(Job(parent, predictor, options, train, rows, say, base_dir))
    after = measure(candidate.predictor, rows.frame, name, artifacts_size(candidate.model.artifacts))
    say(f"{name}: {before.value:.4f} → {after.value:.4f}; model {before.size_bytes:,} → {after.size_bytes:,} bytes")
    relative = relative_metric(predictor.target.task, name)
    drop = check_gate(before, after, max_drop, f"{method} of {parent.path}", rows.described, relative=relative)
    config_yaml = candidate.config_yaml or _serving_runtime_reset(parent, candidate)
    replace = {CONFIG: config_yaml.encode()} if config_yaml else {}
    if candidate.features_state is not None:
        replace[FEATURES] = json.dumps(candidate.features_state, indent=2, default=str).encode()
    # what describes the model is the compressed model's: its metrics on the rows it was judged
    # on, its predictions' reference profile (for prediction drift) when those are the test
    # split the profile was made on; the parent's report, plots and model card go (the lineage
    # names the parent that has them)
    replace[METRICS] = json.dumps(_metrics(candidate.predictor, rows, parent), indent=2, default=str).encode()
    if data is None and PROFILE in parent.files:
        profile = parent.profile()
        profile["prediction"] = prediction_profile(predictor.target.task, candidate.predictor.predict(rows.frame))
        replace[PROFILE] = json.dumps(profile, indent=2, default=str).encode()
    stale_files = [name for name in parent.files if name in (REPORT, MODEL_CARD) or name.startswith(PLOTS)]
    stale = [runtime_model("onnxruntime")] if runtime_model("onnxruntime") in parent.models else []
    details = {**candidate.details, "method": method, "description": chosen.description,
               **_settings(method, options), "gate": {"rows": rows.described, "metric": name, "max_drop": max_drop,
                                             "drop": round(drop, 6), "relative": relative},
               "before": _figures(before), "after": _figures(after)}
    return derive(parent, out, action="compressed", replace=replace, replace_models={MAIN_MODEL: candidate.model},
                  remove_models=stale, remove=stale_files, details=details)


def _metrics(predictor: Predictor, rows: Rows, parent: Bundle) -> dict[str, Any]:
    """The compressed model's test metrics (as training reports them) on the gate's rows."""
    from modelmill.scoring import decision_metrics, score

    metrics, _ = score(predictor, rows.frame, plots=False, plots_dir=None, history=[])
    metrics.update(decision_metrics(predictor.target, predictor.raw(rows.frame), rows.frame))
    return {**metrics, "rows": parent.metrics().get("rows"), "evaluated_on": rows.described}


def _serving_runtime_reset(parent: Bundle, candidate: Candidate) -> str | None:
    """The config with ``serving.runtime: auto`` when the parent's names a runtime the
    compressed model does not run on (an int8 graph from a config that said torch)."""
    config = candidate.predictor.config
    if config.serving.runtime in ("auto", candidate.model.runtime):
        return None
    return dump_config(config.model_copy(update={"serving": config.serving.model_copy(update={"runtime": "auto"})}))


def _settings(method: str, options: Options) -> dict[str, Any]:
    if method == "prune":
        return {"sparsity": options.sparsity, "structured": options.structured,
                "finetune_epochs": options.finetune_epochs}
    return {"int8_mode": options.int8} if method == "int8" else {}


def _figures(measured: Measured) -> dict[str, Any]:
    return {"value": measured.value, "size_bytes": measured.size_bytes, "latency_ms": measured.latency_ms}

