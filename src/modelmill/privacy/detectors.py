"""Personal data in columns and free text, found by our own rules (no model, nothing downloaded).

Structured values (e-mails, phone numbers, card numbers, national IDs, IBANs, IP addresses)
are matched by pattern and, where the format has one, by checksum (:mod:`.values`). Person
names (:mod:`.names`), street addresses, postcodes, birth dates and ages are found by
content and by the column's name (:mod:`.columns`); entities in free text are found and
replaced by placeholders by :mod:`.text`. Every kind is one row of :mod:`.kinds`. Each
column verdict carries a suggested action for the config's ``privacy:`` section and a reason
that holds no value from the data, so it can be written to a file or a log.

This module is the public face of those: import from here.
"""

from __future__ import annotations

from modelmill.privacy.columns import SAMPLE, SUGGESTED_ONLY, Detection, detect_column, kind_by_name
from modelmill.privacy.kinds import KIND_TABLE, detect_value
from modelmill.privacy.names import first_names
from modelmill.privacy.text import find_entities, redact, scrub_text

KINDS = tuple(kind.key for kind in KIND_TABLE)
"""What a column can hold; ``person_id`` (customer_id, user_id, account …) is the one kind hashed."""

__all__ = ["KINDS", "SAMPLE", "SUGGESTED_ONLY", "Detection", "detect_column", "detect_value", "find_entities",
           "first_names", "kind_by_name", "redact", "scrub_text"]
