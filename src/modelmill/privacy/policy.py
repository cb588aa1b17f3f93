"""The privacy policy: the ``privacy:`` section of a config made into the treatment of
each personal column, the same at every door a value comes in by (training data,
``predict``, the REST service's requests, the prediction log's label keys).

A door treats everything it is given, a hash-shaped value too (a client must not query as
a training pseudonym), and exactly once: :meth:`PrivacyPolicy.frame` marks the frame it
returns (``frame.attrs``, which pandas carries through slices, copies and concatenations
of marked frames), and :meth:`PrivacyPolicy.once` (what the predictor calls) treats only
a frame without this policy's mark. Records have no such mark: whoever treated them says
so (``Predictor.predict_records(records, treated=True)``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelmill.config.privacy import DropAction, GeneraliseAction, HashAction, MaskAction, TreatAction
from modelmill.config.schema import DateFeatureConfig, PipelineConfig
from modelmill.errors import BundleError, ConfigError, DataError
# the key errors live in errors, with the encryption's (KEY_ERRORS); importable from here as before
from modelmill.errors import MissingKeyError as MissingKeyError, WrongKeyError as WrongKeyError
from modelmill.privacy.keys import key_fingerprint, key_problem, read_key
from modelmill.privacy.treatments import (Treat, Unreadable, band_column, band_value, date_column, date_value,
                                          hash_value, mask_value, scrub_value, truncate_value, width_decimals)

TREATED = "modelmill.privacy.treated"  # frame.attrs key: the identity of the policy that treated the frame


class PrivacyPolicy:
    """The fitted policy: each column's treatment, the columns dropped, the key's fingerprint.

    Build it with :meth:`from_config` (reads the key when ``hash`` needs one); its
    :meth:`state` goes into ``features.json`` and :meth:`check_state` compares a bundle's
    with the key of this process.
    """

    def __init__(self, config: PipelineConfig, key: bytes | None, *, keyless: bool = False) -> None:
        self.config = config.privacy
        self.key = key
        self.keyless = keyless and key is None  # loaded to read treated values only: hashing refused
        self._known_fingerprint: str | None = None  # a keyless policy's, from the bundle
        self.date_formats = {f.name: f.format for f in config.features if isinstance(f, DateFeatureConfig)}
        self.dropped: list[str] = [n for n, a in self.config.columns.items() if isinstance(a, DropAction)]
        self.actions: dict[str, TreatAction | None] = {  # None: scrubbed free text
            name: action for name, action in self.config.columns.items() if not isinstance(action, DropAction)}
        self.actions.update({name: None for name in self.config.scrub})
        self._treat: dict[str, Treat] = {name: self._treatment(name, action, self.date_formats.get(name))
                                         for name, action in self.actions.items()}

    @classmethod
    def from_config(cls, config: PipelineConfig, *, where: str = "", hash_key: bool = True) -> PrivacyPolicy:
        """The policy of ``config``, with its key read from ``privacy.key_env`` when an action
        needs one. ``hash_key=False``: for reading treated values only (``monitor``,
        ``dashboard``): no key is read, and hashing a value is an error.

        Raises:
            MissingKeyError: ``hash`` is configured and the key's variable is unset or too short.
        """
        privacy = config.privacy
        if not privacy.needs_key or not hash_key:
            return cls(config, None, keyless=privacy.needs_key)
        problem = key_problem(privacy.key_env)
        if problem:
            hashed = ", ".join(n for n, a in privacy.columns.items() if isinstance(a, HashAction))
            raise MissingKeyError(
                f"{where + ': ' if where else ''}privacy.columns hashes {hashed} with a secret key, and the "
                f"environment variable {privacy.key_env} {problem}. Fix: set {privacy.key_env} to the secret "
                "of 16 or more bytes that the model was (or is to be) trained with; keep it, the hashes of "
                "later values must match", path="privacy.key_env")
        return cls(config, read_key(privacy.key_env))

    # ------------------------------------------------------------ what it is

    @property
    def active(self) -> bool:
        """Whether the policy does anything at all."""
        return bool(self.dropped or self.actions)

    @property
    def treated(self) -> list[str]:
        """The columns kept and treated (hashed, masked, generalised, scrubbed)."""
        return list(self.actions)

    @property
    def fingerprint(self) -> str | None:
        """The key's fingerprint (a keyless policy: the bundle's, once :meth:`check_state` saw it)."""
        return key_fingerprint(self.key) if self.key is not None else self._known_fingerprint

    @property
    def identity(self) -> str:
        """16 hex characters naming the policy: its actions, options and key fingerprint."""
        text = json.dumps(self.state(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def date_format(self, column: str) -> str | None:
        """The ``format:`` of the date feature ``column`` (None: ISO)."""
        return self.date_formats.get(column)

    def action(self, column: str) -> str | None:
        """``drop``, ``hash``, ``mask``, ``generalise``, ``scrub`` or None (no treatment)."""
        if column in self.dropped:
            return "drop"
        if column not in self.actions:
            return None
        action = self.actions[column]
        return "scrub" if action is None else action.action

    def value_kind(self, column: str) -> str:
        """What a treated column's request value is: ``number``, ``date`` or ``text``."""
        action = self.actions.get(column)
        return "text" if action is None else action.value_kind()

    def state(self) -> dict[str, Any]:
        """Plain JSON for ``features.json``: each column's action and options, the key's fingerprint."""
        return {"columns": {name: action.model_dump(mode="json") for name, action in self.config.columns.items()},
                "scrub": list(self.config.scrub), "key_env": self.config.key_env,
                "key_fingerprint": self.fingerprint}

    def check_state(self, state: Mapping[str, Any] | None, *, where: str) -> None:
        """That ``state`` (a bundle's ``features.json`` entry) is this policy's, with this key.

        Raises:
            WrongKeyError: the bundle was fitted with another key (both fingerprints named).
            BundleError: its config and its fitted state name other columns.
        """
        if state is None:
            if self.active:
                raise BundleError(f"{where}: the config has a privacy policy but features.json holds none; "
                                  "the bundle is damaged. Fix: train it again")
            return
        if sorted(state.get("columns", {})) != sorted(self.config.columns) \
                or sorted(state.get("scrub", [])) != sorted(self.config.scrub):
            raise BundleError(f"{where}: the privacy policy of features.json names other columns than the "
                              "bundle's config; the bundle is damaged. Fix: train it again")
        theirs = state.get("key_fingerprint")
        if self.keyless:  # reads treated values only: the bundle's fingerprint names the key it lacks
            self._known_fingerprint = None if theirs is None else str(theirs)
            return
        if theirs is not None and theirs != self.fingerprint:
            env = self.config.key_env
            raise WrongKeyError(
                f"{where}: the model's hashed columns were made with the key of fingerprint {theirs}, and "
                f"{env} holds the key of fingerprint {self.fingerprint}; every hashed value would be unknown "
                f"to it. Fix: set {env} to the key the model was trained with")

    def describe(self) -> list[str]:
        """One line per column, for the model card (the key's fingerprint, never the key)."""
        lines = [f"{name}: {action.describe()}" for name, action in self.config.columns.items()]
        lines += [f"{name}: free text scrubbed (e-mails, phone and card numbers, names … replaced by placeholders)"
                  for name in self.config.scrub]
        if self.fingerprint:
            lines.append(f"hash key: from {self.config.key_env}, fingerprint {self.fingerprint}")
        return lines

    # ------------------------------------------------------------ treating

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` at a door: the dropped columns gone, the treated ones treated, every value
        (a copy, marked as treated by this policy; the columns it lacks are left to the checks
        that follow)."""
        if not self.active:
            return frame
        present = [c for c in self.dropped if c in frame.columns]
        treated = frame.drop(columns=present) if present else frame.copy(deep=False)
        for name in self.actions:
            if name in treated.columns:
                treated[name] = self._column(name, treated[name])
        return self.mark(treated)

    def once(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` treated unless this policy already did (its mark): what the predictor
        calls, so a raw frame is treated exactly once and a treated one never again."""
        if not self.active or self.is_treated(frame):
            return frame
        return self.frame(frame)

    def mark(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Mark ``frame`` (in place) as holding values this policy treated: for a frame built
        from treated records or from a bundle's treated profile."""
        if self.active:
            frame.attrs[TREATED] = self.identity
        return frame

    def is_treated(self, frame: pd.DataFrame) -> bool:
        return bool(frame.attrs.get(TREATED) == self.identity)

    def records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Records (column → value) at a door, treated like frames."""
        return [self.record(record) for record in records]

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        treated = {k: v for k, v in record.items() if k not in self.dropped}
        for name, treat in self._treat.items():
            if name in treated:
                treated[name] = _guarded(treat, treated[name], name)
        return treated

    def value(self, column: str, value: Any) -> Any:
        """One value of a treated column, treated (missing values and markers stay missing).

        Raises:
            DataError: a value the treatment cannot read (a date that is none, a number too
                large for its bands); the value itself is never in the message.
        """
        return _guarded(self._treat[column], value, column)

    def _column(self, name: str, column: pd.Series) -> pd.Series:
        action = self.actions[name]
        if isinstance(action, GeneraliseAction) and action.width is not None \
                and pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            bands, overflow = band_column(column.to_numpy(dtype="float64", na_value=np.nan), action.width,
                                          width_decimals(action.width))
            if len(overflow):
                raise _unreadable(name, "number", overflow.tolist())
            return pd.Series(bands, index=column.index, name=column.name)
        # each distinct value once (identifiers, postcodes and dates repeat), then mapped back
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        if isinstance(action, GeneraliseAction) and action.to is not None:
            values, bad = date_column(pd.Series(uniques), action.to,
                                      self.date_formats.get(name))
        else:
            values, bad = self._each(name, list(uniques))
        if bad:
            raise _unreadable(name, self.value_kind(name), np.flatnonzero(np.isin(codes, bad)).tolist())
        mapped = np.empty(len(values) + 1, dtype=object)
        mapped[:-1] = values
        mapped[-1] = None  # code -1: a missing value stays missing
        return pd.Series(mapped[codes], index=column.index, name=column.name, dtype=object)

    def _each(self, name: str, values: list[Any]) -> tuple[list[Any], list[int]]:
        treat = self._treat[name]
        out: list[Any] = []
        bad: list[int] = []
        for index, value in enumerate(values):
            try:
                out.append(treat(value))
            except Unreadable:
                bad.append(index)
                out.append(None)
        return out, bad

    def _treatment(self, name: str, action: TreatAction | None, date_format: str | None) -> Treat:
        if action is None:
            return scrub_value
        if isinstance(action, HashAction):
            return self._hashing(name)
        if isinstance(action, MaskAction):
            keep_last = action.keep_last
            return lambda value: mask_value(value, keep_last)
        if action.width is not None:
            width, decimals = action.width, width_decimals(action.width)
            return lambda value: band_value(value, width, decimals)
        if action.to is not None:
            to = action.to
            return lambda value: date_value(value, to, date_format)
        keep = int(action.keep or 0)
        return lambda value: truncate_value(value, keep)

    def _hashing(self, name: str) -> Treat:
        key = self.key
        if key is not None:
            return lambda value: hash_value(key, value)
        if not self.keyless:  # from_config reads it; a policy built by hand must give it
            raise ConfigError(f"privacy.columns.{name}: hash needs the key", path="privacy.key_env")
        env = self.config.key_env

        def refuse(value: Any) -> Any:
            raise MissingKeyError(f"privacy.columns.{name}: this model was loaded without its hash key, to read "
                                  f"treated values only; it cannot hash new ones. Fix: set {env} and load it "
                                  "again", path="privacy.key_env")
        return refuse


def _unreadable(column: str, kind: str, rows: list[int]) -> DataError:
    return DataError(f"{len(rows)} values the privacy policy cannot read as {kind}s (a date that is none, a "
                     "number too large for its bands; the values are not shown: personal data)",
                     column=column, rows=rows)


def _guarded(treat: Treat, value: Any, column: str) -> Any:
    try:
        return treat(value)
    except Unreadable:
        raise DataError("a value the privacy policy cannot read (not shown: personal data)", column=column) from None
