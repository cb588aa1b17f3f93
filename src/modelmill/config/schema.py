"""The config tree: one pydantic model per component, each default written once, here.

Unknown keys are rejected (``extra="forbid"``). Components chosen by ``type:`` are
discriminated unions, so a wrong ``type`` lists the valid ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from modelmill.config.compare import CompareConfig
from modelmill.config.differential_privacy import DifferentialPrivacyConfig
from modelmill.config.images import ImageFeatureBase
from modelmill.config.models import MLPModelConfig, ModelConfig
from modelmill.config.monitoring import MonitoringConfig
from modelmill.config.optimizers import AdamWConfig, OneCycleConfig, OptimizerConfig, SchedulerConfig
from modelmill.config.privacy import PrivacyConfig, TreatAction
from modelmill.config.section import Section
from modelmill.config.serving import ServingConfig
from modelmill.config.targets import TargetConfig
from modelmill.config.text import TextFeatureBase
from modelmill.config.tracking import TrackingConfig
from modelmill.config.tune import TuneConfig


# ----------------------------------------------------------------------------- data


class SplitConfig(Section):
    """How rows are divided into train, validation (early stopping) and test."""

    method: Literal["random", "stratified", "time", "group", "column", "files"] = Field(
        "stratified",
        description="random; stratified (by target class); time (oldest rows train, newest test, "
        "by `column`); group (no group in two splits, by `column`); column (a column holding "
        "train/valid/test); files (`test_source` and optional `valid_source`).",
    )
    test: float = Field(0.2, gt=0, lt=1, description="Fraction of rows held out for the test set.")
    valid: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the remaining rows held out for validation."
    )
    seed: int = Field(0, description="Seed of the shuffling.")
    column: str | None = Field(
        None, description="Date column (time), group column (group) or split column (column)."
    )
    test_source: str | None = Field(None, description="Test file for method `files`.")
    valid_source: str | None = Field(None, description="Validation file for method `files`.")

    @model_validator(mode="after")
    def _needs_column(self) -> SplitConfig:
        if self.method in ("time", "group", "column") and not self.column:
            raise ValueError(f"split method {self.method!r} needs `column`")
        if self.method == "files" and not self.test_source:
            raise ValueError("split method 'files' needs `test_source`")
        return self


class DataConfig(Section):
    """Where the data comes from and how it is read."""

    source: str = Field(
        description="Path or URL: CSV/TSV, Parquet, JSON, JSON Lines, Excel, an http(s) URL, "
        "a SQLAlchemy URL (sqlite:///file.db) with `query`, dataset:NAME, IDX or NPZ images, or a "
        "folder of images."
    )
    format: Literal["auto", "csv", "tsv", "parquet", "json", "jsonl", "excel", "sql", "dataset", "idx", "npz",
                    "images"] = Field(
        "auto", description="auto: from the extension; idx (MNIST files, labels file found beside), "
        "npz, images (a folder with one sub-folder per class)."
    )
    query: str | None = Field(None, description="SQL query, for a SQL source.")
    sheet: str | int | None = Field(None, description="Excel sheet name or index (default: first).")
    delimiter: str | None = Field(None, description="CSV delimiter (default: sniffed).")
    encoding: str = Field(
        "auto", description="Text encoding; auto = UTF-8 (BOM honoured), invalid bytes are an error."
    )
    header: bool | None = Field(None, description="Whether a CSV has a header row (default: sniffed).")
    columns: list[str] | None = Field(None, description="Column names for a file without a header.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    shards: bool = Field(
        False, description="With training.backend: ray: the source (a Parquet or CSV file, folder or glob) is read, "
        "cleaned, split, fitted on and transformed in shards on the cluster and streamed to the training workers, "
        "so the table is never whole on one machine. The split is by a seeded hash of each row's position (not "
        "the rows a split on one machine draws; stratified splits are random here), rows are shuffled within a "
        "buffer, and the data checks (but each feature's check of its values, which runs on every block) and the "
        "drift profile take a sample of about 100,000 training rows. Torch model "
        "types (mlp, linear) only; no text or image features, privacy policy, outliers.action: drop, time, column "
        "or files split, reader settings beyond Parquet or comma-separated UTF-8 CSV with a header, or threshold: "
        "auto / calibration without a validation split.")


# ------------------------------------------------------------------------- cleaning


class OutlierConfig(Section):
    """Outliers of number features, detected with bounds fitted on the training split."""

    method: Literal["none", "iqr", "zscore"] = "none"
    action: Literal["clip", "drop"] = Field(
        "clip", description="clip: values are clipped to the bounds everywhere (also when serving); "
        "drop: training rows outside the bounds are dropped (test rows never are)."
    )
    threshold: float | None = Field(
        None, gt=0, description="IQR multiplier (default 1.5) or z-score (default 3)."
    )


class CleaningConfig(Section):
    duplicates: Literal["drop", "keep"] = "drop"
    outliers: OutlierConfig = Field(default_factory=OutlierConfig)


class MissingConfig(Section):
    """What to do with missing values of one feature."""

    strategy: Literal["auto", "mean", "median", "mode", "constant", "drop"] = Field(
        "auto", description="auto = median for numbers and dates, the unknown bucket for "
        "categories, the most frequent value for binaries; drop = drop the training row "
        "(at prediction time the fitted fallback is used)."
    )
    value: float | str | None = Field(None, description="The fill value for `constant`.")
    indicator: bool = Field(False, description="Add a was-missing 0/1 input.")

    @model_validator(mode="after")
    def _constant_needs_value(self) -> MissingConfig:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("missing strategy 'constant' needs `value`")
        return self


# ------------------------------------------------------------------------- features


class FeatureBase(Section):
    name: str = Field(description="Column name in the data.")
    pii: bool = Field(
        False, description="Personal data: the prediction log stores it as a keyed HMAC or leaves "
        "it out (serving.log.pii), never in clear."
    )
    missing: MissingConfig = Field(default_factory=MissingConfig)


class NumberFeatureConfig(FeatureBase):
    type: Literal["number"] = "number"
    normalization: Literal["zscore", "minmax", "robust", "log1p", "none"] = "zscore"
    encoding: Literal["scalar", "piecewise"] = Field(
        "piecewise", description="scalar: the normalised value; piecewise: a piecewise-linear encoding "
        "over quantile bins fitted on the training split (Gorishniy et al., 2022), which lets an "
        "MLP model thresholds and non-monotone effects."
    )
    bins: int = Field(16, ge=2, le=256, description="Quantile bins of the piecewise encoding.")


class CategoryFeatureConfig(FeatureBase):
    type: Literal["category"] = "category"
    min_frequency: int = Field(1, ge=1, description="Rarer values go to the unknown bucket.")
    max_size: int = Field(10_000, ge=1, description="Largest vocabulary kept (most frequent first).")
    encoding: Literal["auto", "onehot", "embedding"] = Field(
        "auto", description="auto = onehot up to 64 values, embedding above."
    )
    embedding_dim: int | None = Field(
        None, ge=1, description="Embedding size (default: min(50, 1.6 * vocabulary^0.56))."
    )


class BinaryFeatureConfig(FeatureBase):
    type: Literal["binary"] = "binary"
    positive: str | None = Field(
        None, description="The value that means 1 (default: true/yes/1 or the later in sort order)."
    )


DatePart = Literal["year", "month", "day", "weekday", "hour", "minute", "dayofyear"]
DEFAULT_DATE_PARTS: tuple[DatePart, ...] = ("year", "month", "day", "weekday", "dayofyear")


class DateFeatureConfig(FeatureBase):
    type: Literal["date"] = "date"
    parts: list[DatePart] = Field(default_factory=lambda: list(DEFAULT_DATE_PARTS))
    cyclical: bool = Field(True, description="Encode periodic parts as sine and cosine.")
    format: str | None = Field(None, description="strftime format (default: inferred).")


class TextFeatureConfig(TextFeatureBase, FeatureBase):
    """A free-text column: tokenizer, maximum length and encoder."""


class ImageFeatureConfig(ImageFeatureBase, FeatureBase):
    """An image column: file paths, encoded bytes, or decoded arrays (IDX, NPZ)."""


FeatureConfig = Annotated[
    NumberFeatureConfig
    | CategoryFeatureConfig
    | BinaryFeatureConfig
    | DateFeatureConfig
    | TextFeatureConfig
    | ImageFeatureConfig,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- models




# ------------------------------------------------------------------------- training


class EarlyStoppingConfig(Section):
    metric: str = Field(
        "auto", description="Validation metric to watch (auto = roc_auc, accuracy or rmse by target)."
    )
    patience: int = Field(5, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0)
    enabled: bool = True


class TrainingConfig(Section):
    epochs: int = Field(20, ge=1)
    batch_size: int | Literal["auto"] = Field(
        "auto", description="Rows per step; auto = training rows / 32 rounded down to a power of "
        "two, between 16 and 256 (small data sets still get enough optimiser steps)."
    )

    @model_validator(mode="after")
    def _positive_batch(self) -> TrainingConfig:
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1 (or auto)")
        return self
    optimizer: OptimizerConfig = Field(default_factory=AdamWConfig)
    scheduler: SchedulerConfig = Field(default_factory=OneCycleConfig)
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights.")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights (added to the loss).")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this.")
    ema: float | None = Field(None, gt=0, lt=1, description="Torch model types: decay of an exponential moving "
                              "average of the trained weights, updated after every step, which is validated, kept "
                              "and saved instead of the last step's weights (e.g. 0.999: about the last 1,000 "
                              "steps, once ~10,000 steps are done; before, the decay ramps up as (1 + steps) / "
                              "(10 + steps)); it evens out noisy steps, differential privacy's at no privacy "
                              "cost. null: off.")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    time_budget: float | None = Field(None, gt=0, description="Wall-clock budget in seconds.")
    seed: int = 0
    deterministic: bool = Field(False, description="Bit-for-bit repeatable runs (slower).")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: physical cores).")
    loader_workers: int = Field(2, ge=0, le=64, description="Processes that decode streamed images (an image "
                                "feature with memory: stream) ahead of the training loop; 0: in the loop itself.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["local", "ray"] = Field(
        "local", description="What drives the training loop: local (this process), or ray (Ray Train's "
        "TorchTrainer: data-parallel DDP on `workers` workers of the cluster at RAY_ADDRESS, else of a private one "
        "on this machine; each worker steps on its share of the rows and of each batch, so the config means the "
        "same run). Learners (gbdt, tfidf_logistic) fit on this machine either way.")
    workers: int = Field(2, ge=1, le=1024, description="backend: ray: training workers, each a process with its "
                         "shard of the training rows and batch_size / workers rows of each batch (rounded down, "
                         "at least 1: a step then takes fewer rows in all, and the run's log says so).")
    cpus_per_worker: int = Field(1, ge=1, le=256, description="backend: ray: CPUs each worker asks the cluster "
                                 "for; its torch threads too, unless `threads` is set.")
    max_failures: int = Field(3, ge=0, description="backend: ray: how often a failed worker (a node lost, a "
                              "process killed) is replaced and training resumed from the last epoch's checkpoint "
                              "before the run fails.")
    storage: str | None = Field(None, min_length=1, description="backend: ray: where Ray Train keeps the epochs' checkpoints; "
                                "every node must reach it (a shared filesystem, s3://...; a relative path is taken from the "
                                "working directory). null: the run's checkpoints/ray folder, else a temporary "
                                "folder: a single-machine cluster only (a cluster on several machines is refused).")
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="Arithmetic of the training forward pass: bfloat16 runs convolutions and matrix "
        "products in bfloat16 (weights, optimiser, norms and loss stay float32; evaluation and prediction are "
        "float32); auto = bfloat16 where the device has it natively (AVX-512/AMX CPUs, recent GPUs), else float32.")
    progress: bool = True
    privacy: DifferentialPrivacyConfig | None = Field(
        None, description="Differentially private training (DP-SGD through Opacus) of a torch model type; "
        "null: off. The spent ε goes into the epoch history, the metrics, the report and the model card.")

    @model_validator(mode="after")
    def _private_gradients(self) -> TrainingConfig:
        """DP-SGD computes, clips and noises per-row gradients of the model's forward pass alone: a penalty
        added to the loss, or a clip of the summed gradient, would be silently dropped by Opacus's optimizer."""
        if self.privacy is None:
            return self
        if self.l1 or self.l2:
            raise ValueError("training.l1 / training.l2 cannot be used with training.privacy: DP-SGD's optimizer "
                             "keeps only the clipped per-row gradients, so a penalty added to the loss would be "
                             "ignored. Fix: set l1 and l2 to 0 and use training.optimizer.weight_decay (applied "
                             "by the optimizer itself, which keeps the privacy guarantee)")
        if self.grad_clip:
            raise ValueError("training.grad_clip cannot be used with training.privacy: DP-SGD clips each row's "
                             "gradient to training.privacy.max_grad_norm instead. Fix: remove grad_clip (set "
                             "privacy.max_grad_norm)")
        return self


class EvaluationConfig(Section):
    plots: bool = True
    report: bool = True
    explain: int = Field(3, ge=0, le=50, description="Test records the report explains column by column (with "
                         "maps of picture and text columns), after the columns' permutation importance on the "
                         "test split, which also goes on the model card; 0: neither.")


# --------------------------------------------------------------------------- whole

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a run's (and a study's) name: it names folders


class PipelineConfig(Section):
    """The whole pipeline."""

    task: Literal["predict"] = Field("predict", description="predict: one row in, one value out (classes or a "
                                     "number); forecast: series forecast steps ahead (another config shape).")
    name: str = Field(pattern=NAME_PATTERN, description="Name of the runs.")
    data: DataConfig
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    features: list[FeatureConfig] = Field(min_length=1)
    target: TargetConfig
    model: ModelConfig = Field(default_factory=MLPModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _names_unique(self) -> PipelineConfig:
        seen: set[str] = set()
        for feature in self.features:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} is listed twice")
            seen.add(feature.name)
        if self.target.name in seen:
            raise ValueError(f"the target {self.target.name!r} is also listed as a feature")
        return self

    @model_validator(mode="after")
    def _privacy_columns(self) -> PipelineConfig:
        """A treated column is a feature of a type that reads the treated value; a dropped one
        is no feature; the target is never treated; scrubbed columns are text features."""
        features = {f.name: f for f in self.features}
        for name, action in self.privacy.columns.items():
            where = f"privacy.columns.{name}"
            if name == self.target.name:
                raise ValueError(f"{where}: {name!r} is the target; the target cannot be dropped or treated. "
                                 "Fix: remove it from privacy.columns")
            if not isinstance(action, TreatAction):  # drop
                if name in features:
                    raise ValueError(f"{where}: a dropped column cannot be a feature. Fix: remove {name!r} from "
                                     "features, or hash, mask or generalise it instead")
                continue
            if name not in features:
                raise ValueError(f"{where}: {action.action} keeps a column for the model, and {name!r} is no "
                                 f"feature. Fix: add it to features, or use drop")
            feature = features[name]
            readers = _TREATED_READERS[action.value_kind()]
            if not isinstance(feature, readers):
                kinds = ", ".join(_CONFIG_TYPE_NAMES[r] for r in readers)
                raise ValueError(f"{where}: {action.action} gives {action.value_kind()} values, which a feature "
                                 f"of type {_CONFIG_TYPE_NAMES.get(type(feature), '?')} cannot read. Fix: make "
                                 f"{name!r} a feature of type {kinds}")
        for index, name in enumerate(self.privacy.scrub):
            if not isinstance(features.get(name), TextFeatureConfig):
                raise ValueError(f"privacy.scrub[{index}]: {name!r} is not a text feature; only free text is "
                                 "scrubbed. Fix: list text features only (drop, hash or mask other columns)")
        return self

    @model_validator(mode="after")
    def _dropped_unused(self) -> PipelineConfig:
        """A dropped column is gone right after reading: nothing else may read it (the split's
        column, the prediction log's key column)."""
        split, key_column = self.data.split, self.serving.log.key_column
        uses = {split.column: f"data.split.column (the {split.method} split's column)",
                key_column: "serving.log.key_column (the column labels name records by)"}
        for name, action in self.privacy.columns.items():
            if action.action == "drop" and name in uses:
                raise ValueError(f"privacy.columns.{name}: {name!r} is dropped right after reading, and "
                                 f"{uses[name]} needs it. Fix: hash it instead ({name}: hash keeps equal values "
                                 f"equal, so it still groups and matches), or name another column there")
        return self


# which feature types read what a privacy action leaves: text (hash, mask, keep), numbers, dates
_TREATED_READERS: dict[str, tuple[type[FeatureBase], ...]] = {
    "text": (CategoryFeatureConfig, TextFeatureConfig),
    "number": (NumberFeatureConfig, CategoryFeatureConfig),
    "date": (DateFeatureConfig, CategoryFeatureConfig),
}
_CONFIG_TYPE_NAMES: dict[type[FeatureBase], str] = {
    NumberFeatureConfig: "number", CategoryFeatureConfig: "category", BinaryFeatureConfig: "binary",
    DateFeatureConfig: "date", TextFeatureConfig: "text", ImageFeatureConfig: "image"}
