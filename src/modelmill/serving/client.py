"""A Python client of the REST service: frames in, frames out.

``Client(url).predict(frame)`` returns the same columns as ``Pipeline.predict`` (and
``modelmill predict``), indexed like the input. Large frames are sent in chunks of the
server's ``max_records``; a 503 (busy) is retried after its Retry-After, a few times.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
from PIL import Image

from modelmill.errors import ServingError


class ServiceError(ServingError):
    """The service answered with an error: its HTTP status and error code (``load_failed``,
    ``busy`` …), for callers that act on which it was."""

    def __init__(self, message: str, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout: float = 30.0, retries: int = 3,
                 admin_token: str | None = None, api_key: str | None = None,
                 feedback_token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._tokens = {"admin": admin_token, "predict": api_key, "feedback": feedback_token}
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._max_records: int | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ calls

    def predict(self, data: pd.DataFrame | Iterable[Mapping[str, Any]], *, ids: bool = False) -> pd.DataFrame:
        """Predictions for every row (or record), as a DataFrame with the input's index;
        ``ids``: also the ``request_id`` and ``row`` that labels sent later name."""
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(list(data))
        if frame.empty:
            raise ServingError("0 rows to predict")
        records = _records(frame)
        chunk = self.max_records
        rows: list[dict[str, Any]] = []
        for start in range(0, len(records), chunk):
            answer = self._call("POST", "/v1/predict", json={"instances": records[start:start + chunk]},
                                token="predict")
            keys = {"request_id": answer["request_id"]} if ids else {}
            rows.extend({**prediction, **keys, **({"row": n} if ids else {})}
                        for n, prediction in enumerate(answer["predictions"]))
        return pd.DataFrame.from_records(rows, index=frame.index)

    def forecast(self, history: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None, *,
                 series: Sequence[str] | None = None,
                 future: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None) -> pd.DataFrame:
        """``POST /v1/forecast``: the next horizon of every series of ``history`` (rows with the
        target) and of every kept series named in ``series``, with the ``future`` covariates of
        each forecast step where the model has them. One row per series and step: the id, the
        time (as datetimes), ``forecast``, ``lower`` and ``upper``."""
        body: dict[str, Any] = {}
        if history is not None:
            body["history"] = _records(_frame(history))
        if series:
            body["series"] = list(series)
        if future is not None:
            body["future"] = _records(_frame(future))
        answer = self._call("POST", "/v1/forecast", json=body, token="predict")
        frame = pd.DataFrame.from_records(answer["forecasts"])
        if len(frame.columns) >= 4:  # ([id,] time, forecast, lower, upper)
            time_column = frame.columns[-4]
            frame[time_column] = pd.to_datetime(frame[time_column])
        return frame

    def recommend(self, user: str | int | float | np.generic, k: int | None = None, *,
                  exclude: Sequence[str | int | float | np.generic] | None = None,
                  items: Sequence[str | int | float | np.generic] | None = None) -> dict[str, Any]:
        """``POST /v1/recommend``: the top ``k`` items for ``user``, best first, leaving out what the
        user is known to have, ``items`` and ``exclude``. ``items``: the user's known items for this
        request (a new user's session: their list is ranked from them). ``k``: None leaves it out,
        so the service's default applies (the bundle's first ``evaluation.k``, at most
        ``serving.max_k``; GET /v1/model shows it). The answer as the service
        gives it: ``user``, ``items`` (each ``item`` and ``score``), ``known_user``, ``fallback``
        (None, ``history`` or ``popular``), ``unknown_items``, and the model, version and request id.
        Ids go as they are (numpy numbers as Python ones); one string for ``exclude`` or ``items`` is
        refused, since it would go as its characters."""
        for name, ids in (("exclude", exclude), ("items", items)):
            if isinstance(ids, (str, bytes)):
                raise ServingError(f"{name} is one string ({ids!r:.40}), not a list of ids: it would be sent as "
                                   f"its characters. Fix: pass a list, {name}=[{ids!r:.40}]")
        body: dict[str, Any] = {"user": _plain(user)}
        if k is not None:
            body["k"] = k
        if exclude is not None:
            body["exclude"] = [_plain(i) for i in exclude]
        if items is not None:
            body["items"] = [_plain(i) for i in items]
        return dict(self._call("POST", "/v1/recommend", json=body, token="predict"))

    def feedback(self, labels: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Labels for earlier predictions (``request_id``, ``row``, ``value``; or ``key`` and
        ``value``); one result per label: stored, unknown or sampled_out. Needs ``feedback_token``."""
        frame = labels if isinstance(labels, pd.DataFrame) else pd.DataFrame.from_records(list(labels))
        records = [{k: v for k, v in record.items() if v is not None} for record in _records(frame)]
        results: list[dict[str, Any]] = []
        for start in range(0, len(records), 10_000):
            answer = self._call("POST", "/v1/feedback", json={"labels": records[start:start + 10_000]},
                                token="feedback")
            results.extend({**r, "index": r["index"] + start} for r in answer["results"])
        return pd.DataFrame.from_records(results, index=frame.index)

    def model(self) -> dict[str, Any]:
        """The served model's metadata, metrics, input schema and versions."""
        return self._call("GET", "/v1/model")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def reload(self, version: str | None = None) -> dict[str, Any]:
        """Admin: serve ``version`` (default: the newest). Needs ``admin_token``."""
        return self._call("POST", "/v1/admin/reload", json={"version": version}, token="admin")

    def rollback(self) -> dict[str, Any]:
        """Admin: serve the previous version again. Needs ``admin_token``."""
        return self._call("POST", "/v1/admin/rollback", token="admin")

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any admin call (``POST /v1/admin/shadow``, say). Needs ``admin_token``."""
        return dict(self._call(method, path, token="admin", **({"json": body} if body is not None else {})))

    @property
    def max_records(self) -> int:
        if self._max_records is None:
            self._max_records = int(self.model()["limits"]["max_records"])
        return self._max_records

    def _call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        secret = self._tokens.get(token or "")
        headers = {"Authorization": f"Bearer {secret}"} if secret else None
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise ServingError(f"cannot reach {self.url}{path}: {exc}") from None
            if response.status_code == 503 and attempt < self.retries:
                time.sleep(_retry_after(response))
                continue
            if response.is_success:
                return response.json()
            raise ServiceError(_describe_failure(response, f"{method} {self.url}{path}"), response.status_code,
                               _error_code(response))
        raise AssertionError("unreachable")


def _frame(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(list(data))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records: NaN and NaT to null, numpy scalars to Python, dates to ISO text."""
    columns = [str(c) for c in frame.columns]
    return [{c: _plain(v) for c, v in zip(columns, row)} for row in frame.itertuples(index=False, name=None)]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.ndim >= 2:
        return _plain_image(value)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if value is pd.NA:
        return None
    if isinstance(value, (bytes, bytearray)):  # an encoded image file travels as base64
        return base64.b64encode(value).decode()
    return value


def _plain_image(pixels: np.ndarray) -> str:
    """A decoded image (IDX, NPZ) travels as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(10.0, max(0.05, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _describe_failure(response: httpx.Response, what: str) -> str:
    try:
        error = response.json()["error"]
        details = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                            for d in error.get("details", [])[:5])
        message = f"{error['message']}" + (f" ({details})" if details else "")
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    return f"{what} answered {response.status_code}: {message}"
