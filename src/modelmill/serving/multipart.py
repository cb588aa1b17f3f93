"""One record as ``multipart/form-data``: what an HTML form or ``curl -F`` sends, so a picture
can be uploaded as a file instead of base64 in JSON.

    curl -F image=@digit.png -F shop=north http://127.0.0.1:8000/v1/predict

Each form field is a column. A file's bytes go to the model as the base64 text the JSON
contract expects. A plain field is read by its column's feature (``Feature.form_value``):
a number or binary column reads JSON when it is JSON (``3.5``, ``true``, ``null``), every
other column takes the text as sent. The record is then validated by the very same
contract as a JSON request, so the rules and the error messages are the same.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from modelmill.serving.problem import Problem


def is_multipart(content_type: str | None) -> bool:
    return (content_type or "").lower().startswith("multipart/form-data")


def multipart_record(body: bytes, content_type: str,
                     form_values: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The request body as ``{"instances": [record]}`` (a 400 Problem if it cannot be parsed)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                                  + b"\r\n\r\n" + body)
    if not message.is_multipart() or message.defects:
        raise Problem(400, "invalid_multipart", "the body is not valid multipart/form-data (check the boundary "
                      "in the Content-Type header)")
    record: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise Problem(400, "invalid_multipart", "a form part has no name (Content-Disposition: form-data; "
                          "name=\"COLUMN\")")
        if name in record:
            raise Problem(422, "invalid_request", f"the field {name!r} is sent twice; send one record per "
                          "multipart request (or JSON for many)")
        record[name] = _value(part, form_values.get(name))
    return {"instances": [record]}


def _value(part: Message, form_value: Callable[[str], Any] | None) -> Any:
    data = part.get_payload(decode=True)
    raw = data if isinstance(data, bytes) else b""
    if part.get_filename() is not None:  # an uploaded file: its bytes, as the JSON contract takes them
        return base64.b64encode(raw).decode("ascii")
    text = raw.decode(part.get_content_charset() or "utf-8", errors="replace")
    return form_value(text) if form_value is not None else text  # the column's feature reads its field
