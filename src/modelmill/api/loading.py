"""A fitted pipeline from a bundle: ``modelmill.load(path)``, or ``from_bundle`` for a bundle
already read and verified."""

from __future__ import annotations

import logging
from pathlib import Path

from modelmill.api.pipeline import Pipeline
from modelmill.bundle import Bundle, read_bundle
from modelmill.data.split import SplitRecord
from modelmill.encryption import Key, as_key
from modelmill.evaluation.card import ModelCard
from modelmill.predictor import Predictor

log = logging.getLogger("modelmill")


def load(path: str | Path, *, runtime: str | None = None, key: Key | None = None) -> Pipeline:
    """A fitted pipeline from a bundle (or a run) directory; every file's hash is verified.
    ``runtime``: what runs the model (``torch``, ``onnxruntime``; None: what the bundle names).
    ``key``: an encrypted bundle's (bytes, hex or base64 text, or a key file as a ``pathlib.Path``; by
    default the environment's, ``MODELMILL_ENCRYPTION_KEY[_FILE]``); it is decrypted in memory."""
    return from_bundle(read_bundle(path, as_key(key) if key is not None else None), runtime=runtime)


def from_bundle(bundle: Bundle, *, runtime: str | None = None) -> Pipeline:
    """A fitted pipeline from a bundle already read and verified (so it is read once)."""
    pipeline = Pipeline(bundle.config(), base_dir=bundle.path)
    pipeline.predictor_ = Predictor.from_bundle(bundle, runtime)
    pipeline.metrics_ = bundle.metrics()
    pipeline.profile_ = bundle.profile()
    split = bundle.split()
    pipeline.split_ = SplitRecord.from_json(split) if split else None
    pipeline.card_ = _read_card(bundle)
    pipeline.key_ = bundle.key
    return pipeline


def _read_card(bundle: Bundle) -> ModelCard | None:
    """The bundle's model card; None for a bundle written before bundles held one, or whose
    card this version cannot read (the rest of the bundle still serves)."""
    data = bundle.model_card()
    if data is None:
        return None
    try:
        return ModelCard.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        log.warning(f"{bundle.path}: model_card.json left out: {exc}")
        return None
