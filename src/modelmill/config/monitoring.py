"""The ``monitoring:`` section: how ``modelmill monitor``, the dashboard and the server's
drift gauges judge the prediction log against the bundle's reference profile."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from modelmill.config.section import Section

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
REGISTRY_ALIAS = re.compile(r"models:/[^/@]+@[A-Za-z0-9_-]{1,255}/?")  # checked fully by tracking.registry


def window_seconds(window: int | str) -> float | None:
    """The length of a time window in seconds; None for a window of a number of rows."""
    if isinstance(window, int):
        return None
    match = DURATION.match(window.strip())
    assert match is not None, window  # the config validated it
    return float(match.group(1)) * SECONDS[match.group(2)]


def parse_window(value: int | str) -> int | str:
    """A count of rows (``1000``) or a duration (``30m``, ``6h``, ``1d``, ``1w``)."""
    if isinstance(value, bool):
        raise ValueError("a window is a number of rows (1000) or a duration (30m, 6h, 1d, 1w)")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        rows = int(value)
        if rows < 2:
            raise ValueError(f"a window of {rows} rows is too small to compare; give 100 or more")
        return rows
    if isinstance(value, str) and DURATION.match(value.strip()) and window_seconds(value.strip()):
        return value.strip()
    raise ValueError(f"{value!r} is neither a number of rows (1000) nor a duration (30m, 6h, 1d, 1w)")


class DriftConfig(Section):
    """When a column's change is an alarm. Effect sizes, not test statistics, decide: they do
    not grow with the sample, so large windows do not cry wolf over tiny shifts; a chi-square
    test at ``alpha`` keeps small windows from alarming on noise."""

    wasserstein: float = Field(0.1, gt=0, description="Normalised Wasserstein distance (in standard deviations of "
                               "the training column) of numbers, dates and text lengths.")
    jensen_shannon: float = Field(0.1, gt=0, le=1, description="Jensen–Shannon distance of categories and binaries.")
    psi: float = Field(0.2, gt=0, description="PSI, used for profiles written before bundles kept quantiles.")
    alpha: float = Field(0.01, gt=0, lt=1, description="A change counts only when a chi-square test rejects "
                         "'no change'; alpha is the level per window, shared among its columns (Bonferroni).")
    missing_rise: float = Field(0.1, gt=0, le=1, description="Rise of the missing-value share (absolute) that alarms.")
    out_of_range: float = Field(0.05, gt=0, le=1, description="Share of values outside the training range that alarms.")
    unseen: float = Field(0.05, gt=0, le=1, description="Share of categories never seen in training that alarms.")
    unknown_tokens: float = Field(0.05, gt=0, le=1, description="Rise of the share of tokens a text's tokenizer "
                                  "does not know that alarms.")
    image_shift: float = Field(0.25, gt=0, description="Move of an image channel's brightness or contrast (or of "
                               "the images' log size), in units of its training spread, that alarms.")
    embedding: float = Field(0.2, gt=0, description="Move of the mean sentence embedding of a text column with a "
                             "pretrained encoder, in units of the training texts' spread around their mean, "
                             "that alarms.")
    embedding_rows: int = Field(200, ge=0, le=100_000, description="Texts per window the pretrained model embeds "
                                "for the embedding drift (0: off). Their first 128 tokens: all-MiniLM-L6-v2 takes "
                                "about 5 s for 200 product reviews on one CPU core.")


class DecayConfig(Section):
    """The model's performance per window: realised where labels arrived, estimated from the
    predicted probabilities (classifiers) where they did not."""

    metric: str = Field("auto", description="The metric followed (auto: the task's default: roc_auc, accuracy, rmse).")
    max_drop: float = Field(0.05, gt=0, description="A window whose metric is worse than the test split's by more "
                            "than this, with the test split's value outside its confidence interval, alarms.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of the confidence intervals.")
    bootstrap: int = Field(200, ge=20, le=10_000, description="Bootstrap resamples of a realised metric's interval.")
    min_labels: int = Field(50, ge=2, description="Fewest labelled rows for a window's realised metric.")


class TriggerConfig(Section):
    """What starts a retraining in ``modelmill watch``. A trigger that fires while a
    retraining runs waits for it to end; then one retraining answers every trigger waiting."""

    drift: bool = Field(True, description="A drift alarm in the latest window that the previous check did not "
                        "have (once per alarm, not once per window it lasts).")
    decay: bool | float = Field(True, description="true: a decay alarm in the latest window (its threshold: "
                                "monitoring.decay.max_drop); a number: the latest window's metric (realised, "
                                "else estimated) worse than it; false: off. Once per alarm, like drift.")
    new_labels: int | None = Field(1000, ge=1, description="This many labels arrived since the last decision "
                                   "(None: off).")
    every: str | None = Field(None, description="A schedule: retrain when this long (6h, 1d, 1w) has passed "
                              "since the last decision (None: off).")
    check_every: str = Field("5m", description="How often watch evaluates the triggers.")

    @field_validator("every", "check_every")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and (not DURATION.match(value.strip()) or not window_seconds(value.strip())):
            raise ValueError(f"{value!r} is not a duration (30s, 5m, 6h, 1d, 1w)")
        return value.strip() if value is not None else None


class RetrainConfig(Section):
    """How ``modelmill retrain`` makes a challenger and when it replaces the champion. The
    challenger learns from the original training data and the labelled records of the
    prediction log but the newest, which are held back: challenger and champion are
    compared on those, and on the original test split."""

    holdout: float = Field(0.3, gt=0, lt=1, description="Share of the labelled records held back (the newest) to "
                           "compare challenger and champion on.")
    min_holdout: int = Field(100, ge=10, description="Fewest records held back; fewer labelled records than "
                             "twice this is an error (wait for more labels).")
    margin: float = Field(0.0, ge=0, description="The challenger's gain on the held-back records (in the metric's units; the paired "
                          "bootstrap interval's lower end) must pass this (0: the interval excludes zero).")
    tolerance: float = Field(0.01, ge=0, description="The challenger may be worse on the original test split by at "
                             "most this (absolute for scores, relative for errors such as rmse).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of the paired bootstrap interval.")
    bootstrap: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples.")
    shadow_records: int = Field(300, ge=10, description="With --shadow-first: labelled records the challenger "
                                "must have predicted in shadow before it is judged on live traffic.")
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    registry: str | None = Field(None, description="Promote through the MLflow model registry instead of a folder "
                                 "of versions: models:/NAME@ALIAS (e.g. models:/credit@champion). The champion is "
                                 "the version the alias names; a promoted challenger is registered as a new version "
                                 "and the alias moved to it (the service, serving models:/NAME@ALIAS, reloads it). "
                                 "The server: tracking.uri, else MLFLOW_TRACKING_URI. None: --versions FOLDER.")

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not REGISTRY_ALIAS.fullmatch(value):
            raise ValueError(f"{value[:200]!r} is not a registered model's alias: the closed loop moves an alias "
                             "to each promoted version. Fix: write models:/NAME@ALIAS, e.g. models:/credit@champion")
        return value


class MonitoringConfig(Section):
    """How the prediction log is watched."""

    window: int | str = Field(1000, description="A window is this many rows (1000) or this much time (30m, 6h, "
                              "1d, 1w). Row windows end at the newest record.")
    min_rows: int = Field(100, ge=2, description="Windows with fewer rows are shown but raise no alarm.")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    decay: DecayConfig = Field(default_factory=DecayConfig)
    refresh_s: float = Field(60.0, gt=0, description="How often the server recomputes its drift gauges over the "
                             "latest window, and the dashboard its pages.")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> int | str:
        if not isinstance(value, (int, str)):
            raise ValueError("a window is a number of rows (1000) or a duration (30m, 6h, 1d, 1w)")
        return parse_window(value)
