"""What a prediction store's records are of (``ModelIdentity``): the model's name, inputs,
target and privacy policy. A store holds the records of one identity; a model that differs
is refused, with each difference said (``differences``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelIdentity:
    """What the store's records are of: the model's name, its input columns and types, and
    its target (name, task, classes). Two models with the same identity may share a store
    (the versions of one model); any other pairing is refused."""

    name: str
    inputs: dict[str, str]  # column → feature type
    target: dict[str, Any]  # {"name", "type", "classes"}
    privacy: dict[str, Any] | None = None  # the privacy policy (policy_identity), None: none

    def as_json(self) -> str:
        data = {"name": self.name, "inputs": self.inputs, "target": self.target}
        if self.privacy is not None:  # a store of a model without a policy reads as before
            data["privacy"] = self.privacy
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelIdentity:
        data = json.loads(text)
        privacy = data.get("privacy")
        return cls(str(data["name"]), dict(data["inputs"]), dict(data["target"]),
                   dict(privacy) if privacy else None)

    def differences(self, other: ModelIdentity) -> list[str]:
        """How ``other`` (the model being served) differs from this one (the store's)."""
        found = []
        if self.name != other.name:
            found.append(f"model {self.name!r} in the store, {other.name!r} served")
        for column in sorted(set(self.inputs) - set(other.inputs)):
            found.append(f"input {column!r} is in the store but not in the served model")
        for column in sorted(set(other.inputs) - set(self.inputs)):
            found.append(f"input {column!r} is new in the served model")
        for column in sorted(set(self.inputs) & set(other.inputs)):
            if self.inputs[column] != other.inputs[column]:
                found.append(f"input {column!r} is {self.inputs[column]} in the store, "
                             f"{other.inputs[column]} in the served model")
        for key in ("name", "type"):
            if self.target.get(key) != other.target.get(key):
                found.append(f"target {key} {self.target.get(key)!r} in the store, {other.target.get(key)!r} served")
        return found + policy_differences(self.privacy or {}, other.privacy or {})


def policy_identity(state: dict[str, Any]) -> dict[str, Any]:
    """What of a privacy policy's state (``PrivacyPolicy.state()``) makes the stored values:
    each column's action with its options, the scrubbed columns, the hash key's fingerprint."""
    return {"columns": dict(state.get("columns", {})), "scrub": sorted(state.get("scrub", [])),
            "key_fingerprint": state.get("key_fingerprint"),
            "key_env": state.get("key_env")}  # where the key is found: not compared


def policy_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """How the privacy policy ``theirs`` (served) differs from ``ours`` (the store's)."""
    found = []
    mine, other = ours.get("columns", {}), theirs.get("columns", {})
    for column in sorted(set(mine) | set(other)):
        if mine.get(column) != other.get(column):
            found.append(f"privacy policy of {column!r}: {_action(mine.get(column))} in the store, "
                         f"{_action(other.get(column))} served")
    if sorted(ours.get("scrub", [])) != sorted(theirs.get("scrub", [])):
        found.append(f"privacy scrub: {ours.get('scrub', [])} in the store, {theirs.get('scrub', [])} served")
    if ours.get("key_fingerprint") != theirs.get("key_fingerprint"):
        found.append(f"privacy hash key fingerprint {ours.get('key_fingerprint')} in the store, "
                     f"{theirs.get('key_fingerprint')} served")
    return found


def _action(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "none"
    options = ", ".join(f"{k} {v}" for k, v in sorted(entry.items()) if k != "action" and v is not None)
    return f"{entry.get('action')}{' (' + options + ')' if options else ''}"
