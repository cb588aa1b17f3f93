"""The JSON summary of ``modelmill monitor`` (and of the dashboard's data): pydantic models,
so that what is written is checked, and its JSON Schema is published in
``docs/monitor-summary.schema.json`` (written by :func:`schema_text`; a test keeps it current)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SUMMARY_VERSION = 1
AlarmKind = Literal["drift", "quality", "prediction", "decay", "estimated_decay"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnDrift(_Model):
    """One column (or ``prediction``) in one window against the reference profile."""

    column: str
    statistic: str = Field(description="wasserstein, jensen_shannon, psi, brightness_contrast_shift")
    value: float | None = Field(description="The effect size; null when there was nothing to compare.")
    threshold: float
    score: float = Field(description="Jensen-Shannon distance between the binned distributions of the reference "
                         "and of the window (missing values a bin of their own): one scale for every column "
                         "type, what columns are ranked by.")
    p_value: float | None = Field(description="Chi-square test of 'no change' over the same bins.")
    drifted: bool
    alarms: list[str] = Field(description="distribution, missing, out_of_range, unseen, unknown_tokens.")
    details: dict[str, Any] = Field(description="The numbers behind the verdict (missing rates, PSI, shares …).")


class Skipped(_Model):
    column: str
    reason: str


class Realised(_Model):
    value: float
    low: float | None = Field(description="Lower end of the bootstrap confidence interval.")
    high: float | None
    rows: int = Field(description="Labelled rows the metric was computed on.")


class Performance(_Model):
    metric: str
    rows: int = Field(description="Records of the reference's version in the window: what this is computed on.")
    labels: int = Field(description="Of those, the records whose label arrived.")
    unknown_labels: int = Field(description="Labels the target cannot take (a class it never saw): left out.")
    reference: float | None = Field(description="The bundle's figure on its test split.")
    realised: Realised | None = Field(description="From the labels that arrived; null when too few did.")
    estimated: float | None = Field(description="Expected from the predicted probabilities alone (classifiers).")
    reference_estimated: float | None = Field(description="The same estimate on the held-out rows at training: "
                                              "what the window's estimate is compared with (a model whose "
                                              "probabilities are not calibrated has a biased estimate).")
    extrapolating: bool = Field(description="Inputs left the training range: the estimate is less reliable.")


class Alarm(_Model):
    window: int
    kind: AlarmKind
    column: str | None
    message: str


class Window(_Model):
    index: int
    start: str = Field(description="Time of the window's first record (ISO 8601, UTC).")
    end: str = Field(description="Time of its last record.")
    rows: int
    labelled: int
    judged: bool = Field(description="False when the window has fewer rows than monitoring.min_rows.")
    versions: dict[str, int] = Field(description="Rows per model version that served them.")
    drift: list[ColumnDrift] = Field(description="Columns ranked by score, the largest change first.")
    skipped: list[Skipped]
    performance: Performance
    alarms: list[Alarm]


class Ranked(_Model):
    column: str
    score: float = Field(description="The largest score over the windows.")
    windows_drifted: int


class LogInfo(_Model):
    url: str
    rows: int
    labelled: int
    first: str | None
    last: str | None


class ModelInfo(_Model):
    name: str
    path: str
    version: str
    task: str
    created_at: str | None


class Settings(_Model):
    window: int | str
    min_rows: int
    metric: str
    thresholds: dict[str, float]
    max_drop: float
    confidence: float


class Summary(_Model):
    """What ``modelmill monitor`` found."""

    summary_version: int = SUMMARY_VERSION
    created_at: str
    model: ModelInfo
    log: LogInfo
    settings: Settings
    windows: list[Window]
    ranking: list[Ranked] = Field(description="Columns by their largest change over the windows.")
    alarms: list[Alarm]
    alarm: bool = Field(description="Whether an alarm fired in any window (exit 3 with --fail-on any).")
    latest_alarm: bool = Field(description="Whether an alarm fired in the newest window (exit 3 by default).")


def summary_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Summary`, as published in docs/."""
    schema = Summary.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    return json.dumps(summary_schema(), indent=2, sort_keys=True) + "\n"
