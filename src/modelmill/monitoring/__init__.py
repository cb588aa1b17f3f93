"""Monitoring: the prediction log (every served record, the labels that arrive later)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelmill.config.serving import LogConfig
from modelmill.monitoring.records import RecordEncoder
from modelmill.monitoring.spool import Spool, default_spool_folder
from modelmill.monitoring.identity import ModelIdentity, policy_identity
from modelmill.monitoring.store import LogStore
from modelmill.monitoring.writer import Count, PredictionLog
from modelmill.privacy.keys import key_fingerprint, pii_key
from modelmill.privacy.policy import PrivacyPolicy

__all__ = ["LogStore", "ModelIdentity", "PredictionLog", "identity_of", "open_prediction_log", "open_store"]


def identity_of(name: str, input_schema: dict[str, Any]) -> ModelIdentity:
    """The store's view of a model from its input schema (a bundle's ``schema.json``, or
    ``Predictor.input_schema()``): name, input columns with their types, target, and the
    privacy policy (actions, options, the hash key's fingerprint): another policy stores
    other values for the same inputs."""
    privacy = input_schema.get("privacy")
    return ModelIdentity(name, {str(i["name"]): str(i["type"]) for i in input_schema["inputs"]},
                         dict(input_schema["target"]), policy_identity(privacy) if privacy else None)


def open_store(settings: LogConfig, identity: ModelIdentity, personal: Sequence[str]) -> tuple[LogStore, bytes | None]:
    """The store, created or migrated and checked against the model; the PII key. Every
    mistake (URL, driver, server down, another model's store, key) is a ServingError here,
    before the service takes a request."""
    assert settings.url is not None
    key = pii_key(settings, bool(personal))
    store = LogStore(settings.url)
    record_key = None
    if settings.key_column:
        hashed = settings.key_column in personal and key is not None
        record_key = {"column": settings.key_column, "hashed": hashed}
    try:
        store.open(identity, pii_fingerprint=key_fingerprint(key) if key else None, record_key=record_key)
    except BaseException:
        store.close()
        raise
    return store, key


def open_prediction_log(settings: LogConfig, name: str, features: Sequence[Any], input_schema: dict[str, Any],
                        count: Count, policy: PrivacyPolicy | None = None) -> PredictionLog:
    """One process's prediction log, started (``policy``: the model's privacy policy, for the
    keys labels name; the records arrive treated by the service's request contract)."""
    personal = [f.name for f in features if getattr(f.config, "pii", False)]
    store, key = open_store(settings, identity_of(name, input_schema), personal)
    encoder = RecordEncoder(features, settings, key, policy)
    folder = Path(settings.spool).expanduser().resolve() if settings.spool else \
        default_spool_folder(store.label, store.sqlite_path)
    prediction_log = PredictionLog(store, settings, encoder, Spool(folder, int(settings.spool_max_mb * 2**20)), count)
    prediction_log.start()
    return prediction_log
