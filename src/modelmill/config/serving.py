"""The ``serving:`` section: how ``modelmill serve`` runs a bundle. Every key can be
overridden on the command line; the bundle's own config provides the defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LogConfig(BaseModel):
    """The prediction log: every served record (inputs, outputs, model version, latency)
    written off the request path to SQLite or PostgreSQL, and the labels that arrive later."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    url: str | None = Field(
        None,
        description="Where records go: sqlite:///monitor.db (relative to the working directory) or "
        "postgresql://user@host/db (any SQLAlchemy URL). None: no log.",
    )
    sample: float = Field(
        1.0, ge=0, le=1,
        description="Share of records stored, chosen by a hash of (request id, row), so a label "
        "sent later can tell a sampled-out record from an unknown one.",
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Records written to the store in one transaction.")
    flush_interval_s: float = Field(
        1.0, gt=0, le=60,
        description="Records are moved from memory to the on-disk spool at least this often: "
        "the most a kill -9 can lose.",
    )
    queue_size: int = Field(
        100_000, ge=1, description="Records held in memory before the writer takes them; more are dropped (counted)."
    )
    spool: str | None = Field(
        None,
        description="Folder of the on-disk spool that holds records until the store has them "
        "(default: beside a SQLite file as <file>-spool, else ~/.local/state/modelmill/spool/<store>).",
    )
    spool_max_mb: float = Field(
        512, gt=0, description="Largest spool; records that do not fit are dropped (counted), never a failed request."
    )
    retention_days: float | None = Field(
        None, gt=0, description="Records (and their labels) older than this are deleted; None keeps all."
    )
    images: Literal["hash", "bytes", "none"] = Field(
        "hash",
        description="What is stored of an image input: its SHA-256 (hash), the file's bytes as "
        "sent (base64), or nothing.",
    )
    pii: Literal["hash", "drop"] = Field(
        "hash",
        description="Inputs whose feature is marked `pii: true`: a keyed HMAC-SHA256 (key from "
        "pii_key_env) or left out. Never stored in clear.",
    )
    pii_key_env: str = Field(
        "MODELMILL_PII_KEY", description="Environment variable holding the HMAC key for `pii: hash`."
    )
    key_column: str | None = Field(
        None,
        description="An input column that identifies a record (an application id, say): "
        "labels may then name it instead of the request id and row.",
    )
    feedback_token_env: str = Field(
        "MODELMILL_FEEDBACK_TOKEN",
        description="Environment variable holding the token of POST /v1/feedback; the endpoint "
        "is off while it is unset.",
    )


class ServingConfig(BaseModel):
    """The REST service: address, micro-batching, limits, versions and shutdown."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Interface to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="What runs the model: torch, or onnxruntime for a bundle holding an ONNX graph (modelmill "
        "export, or an int8 bundle of modelmill compress); auto: what the bundle's model names.",
    )
    threads: int | Literal["auto"] = Field(
        "auto",
        description="Intra-op threads of each worker's model; auto: the usable cores divided "
        "among the workers, one core left to the HTTP event loop when there are few.",
    )
    max_batch_size: int = Field(
        64, ge=1, le=65_536, description="Records grouped into one model call (1 turns batching off)."
    )
    max_wait_ms: float = Field(
        2.0, ge=0, le=1000,
        description="Longest a batch waits for more records, and only while more requests are "
        "already arriving (an idle server never waits).",
    )
    queue_size: int = Field(
        1024, ge=1, description="Requests waiting for the model; more are answered 503 with Retry-After."
    )
    timeout_s: float = Field(10.0, gt=0, description="A request not answered in time gets 504.")
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Larger request bodies get 413 before they are read."
    )
    max_records: int = Field(1000, ge=1, description="Records in one request, at most.")
    explain_max_records: int = Field(
        10, ge=1, description="Records in one POST /v1/explain request, at most (more get 422): each "
        "record costs dozens to hundreds of passes through the model.",
    )
    explain_max_steps: int = Field(
        1024, ge=1,
        description="Integrated Gradients' steps per record in POST /v1/explain, at most. From 1,024 up "
        "the steps are raised per record until completeness holds to 0.01 (at most 1,024); "
        "below it every record takes exactly this many.",
    )
    unknown_categories: Literal["reject", "accept"] = Field(
        "reject",
        description="A category value never seen in training: reject (422 naming the field and "
        "the known values) or accept (the model's unknown bucket).",
    )
    grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM: time for in-flight and queued requests to finish."
    )
    admin_token_env: str = Field(
        "MODELMILL_ADMIN_TOKEN",
        description="Environment variable holding the admin token; admin endpoints are off "
        "while it is unset.",
    )
    admin_remote: bool = Field(
        False, description="Accept admin calls from other hosts (default: loopback clients only)."
    )
    api_keys_env: str = Field(
        "MODELMILL_API_KEYS",
        description="Environment variable holding comma-separated API keys; while it is set, "
        "POST /v1/predict and POST /v1/explain need 'Authorization: Bearer KEY'.",
    )
    shadow: str | None = Field(
        None,
        description="Shadow mode: a challenger in the model folder's .shadow/NAME/ predicts the logged "
        "records beside the served model; both predictions are logged, only the served one answered. "
        "Needs the prediction log. None: no shadow (POST /v1/admin/shadow starts one later).",
    )
    log: LogConfig = Field(default_factory=LogConfig, description="The prediction log.")
