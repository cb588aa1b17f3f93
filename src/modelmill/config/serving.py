"""The ``serving:`` section: how ``modelmill serve`` runs a bundle. Every key can be
overridden on the command line; the bundle's own config provides the defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServingConfig(BaseModel):
    """The REST service: address, micro-batching, limits, versions and shutdown."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Interface to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
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
