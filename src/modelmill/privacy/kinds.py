"""The kinds of personal data, in one table: how each is named in messages and columns,
recognised as a value, found in text, and treated in the config's ``privacy:`` section."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from modelmill.privacy import values as v
from modelmill.privacy.names import looks_like_name

# A column holds one kind of thing, so a majority is the evidence; a lower bar would flag
# columns where a few cells happen to parse, a higher one would miss real columns with
# placeholders ("unknown", "none given") and typos in them.
CONTENT_SHARE = 0.5
# A checksum-valid card or IBAN, or an e-mail, is almost never in a column by chance: a column
# that mixes them with words ("direct", "organic" and referrers' e-mails) is flagged at 20%.
STRONG_SHARE = 0.2


@dataclass(frozen=True)
class InText:
    """How a kind is found in free text: runs of up to ``words`` words that each match
    ``token``, holding ``digits`` digits, tried longest first; or, with ``pattern``, that
    pattern's matches."""

    token: re.Pattern[str] | None = None
    words: int = 1
    digits: tuple[int, int] = (0, 64)
    pattern: re.Pattern[str] | None = None
    not_after: frozenset[str] = frozenset()  # a previous word that makes it something else
    first: re.Pattern[str] | None = None  # what its first word starts with
    singles: int = 9  # words of one character at most ("+33 1 23 45 67 89", "415 - 555 0132")


@dataclass(frozen=True)
class Kind:
    """One kind of personal data.

    Attributes:
        key: The name used in verdicts (``email``).
        label: For messages and placeholders of one value (``e-mail``).
        described: For reasons about a column (``e-mail addresses``).
        action: The suggested action for a column of it.
        why: The reason for the action, for the YAML comment.
        options: The action's options.
        check: Whether one value, on its own, is of this kind (structured kinds only).
        share: The share of a column's values that ``check`` must accept.
        name_words: Words of a column's name that say the kind.
        not_words: Words that make such a name mean something else (``mac_address``).
        shape: Whether a value can be of this kind, when the column's name says so.
        content: Whether a value is of this kind by content, in a column of such values
            (names, addresses, postcodes: no check of their own, unlike the structured kinds).
        in_text: How it is found in free text (None: it is not looked for there).
    """

    key: str
    label: str
    described: str
    action: str
    why: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    check: Callable[[str], bool] | None = None
    share: float = CONTENT_SHARE
    name_words: frozenset[str] = frozenset()
    not_words: frozenset[str] = frozenset()
    shape: Callable[[str], bool] = lambda text: True
    content: Callable[[str], bool] | None = None
    in_text: InText | None = None

    @property
    def placeholder(self) -> str:
        return f"[{self.key.upper()}]"


def _is_postcode(text: str) -> bool:
    return (_POSTCODE.fullmatch(text.upper()) is not None and any(c.isalpha() for c in text)) \
        or re.fullmatch(r"\d{5}-\d{4}", text) is not None


def _year(text: str) -> bool:
    return text.isdigit() and 1850 <= int(text) <= 2100


def _address_shape(text: str) -> bool:
    """A street address has a number and words (``12 Baker Street``), or the address pattern."""
    return (any(c.isdigit() for c in text) and len(text.split()) >= 2) or ADDRESS.match(text) is not None


ADDRESS = re.compile(
    r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,5})?,?\s+(?:[^\W\d_][\w'.-]*\s+){0,5}?(?:street|st|road|rd|avenue|ave|lane|ln"
    r"|drive|dr|boulevard|blvd|way|court|ct|place|pl|square|sq|terrace|close|crescent|highway|hwy|parkway"
    r"|pkwy|circle|cir|trail|rue|calle|avenida|via|strasse|straße)\b"
    r"|[^\W\d_][\w'. -]{1,40}?(?:straße|strasse|str\.|weg|gasse|platz|allee|street|road|avenue)\s+\d{1,4}[a-z]?\b"
    r"|(?:calle|carrer|rua|via|rue|avenida|plaza)\s+[^\d]{2,40}\d{1,4}\b", re.IGNORECASE)
_POSTCODE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[ABCEGHJ-NPRSTVXY]\d[A-Z] ?\d[A-Z]\d"
                       r"|[1-9]\d{3} ?[A-Z]{2}|\d{5}-\d{4}")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_ID_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,40}")
_NUMERIC_WORD = re.compile(r"[\d+()./-]*\d[\d+()./-]*|[-/]|x\d{1,6}|ext\.?|x", re.IGNORECASE)
_DIRECT = "a direct identifier: dropped, so never a feature"
_SWEENEY = "a quasi-identifier (Sweeney 2000)"

KIND_TABLE: tuple[Kind, ...] = (  # in order of priority: a value is the first kind that accepts it
    Kind("email", "e-mail", "e-mail addresses", "drop", _DIRECT, check=v.is_email, share=STRONG_SHARE,
         name_words=frozenset({"email", "mail", "emailaddress"}), shape=lambda text: "@" in text,
         in_text=InText(pattern=v.EMAIL)),
    # Personal data in the EU (CJEU C-582/14, Breyer). Dropped, not masked: a mask keeps
    # characters by count and cannot cut at the network boundary, and a raw address as a
    # category rarely generalises; derive a coarse feature (country) upstream if it matters.
    Kind("ip", "IP address", "IP addresses", "drop", "personal data (CJEU C-582/14): dropped; a character mask "
         "cannot cut at the network boundary", check=v.is_ip,
         name_words=frozenset({"ip", "ipaddress", "ipv4", "ipv6", "ipaddr", "remoteaddr", "clientip"}),
         shape=lambda text: any(c.isdigit() for c in text) and ("." in text or ":" in text),
         in_text=InText(token=re.compile(r"\[?[0-9A-Fa-f]*[:.][0-9A-Fa-f:.]*(?:%\w+)?\]?(?::\d{1,5})?"), digits=(1, 40),
                        not_after=frozenset({"v", "ver", "version", "build", "release", "firmware"}))),
    Kind("iban", "IBAN", "IBANs", "drop", _DIRECT, check=v.is_iban, share=STRONG_SHARE,
         name_words=frozenset({"iban", "bankaccount"}), shape=lambda text: v.digit_count(text) >= 8,
         in_text=InText(token=re.compile(r"[A-Z0-9]{1,34}"), words=9, digits=(8, 34),
                        first=re.compile(rf"(?:{'|'.join(v.IBAN_COUNTRIES)})\d\d"))),
    Kind("card", "card number", "card numbers", "drop", _DIRECT, check=v.is_card, share=STRONG_SHARE,
         name_words=frozenset({"card", "creditcard", "cc", "ccnumber", "cardnumber", "pan"}),
         shape=lambda text: v.digit_count(text) >= 12,
         in_text=InText(token=re.compile(r"[\d.-]*\d[\d.-]*"), words=7, digits=(13, 19), singles=1)),
    Kind("national_id", "national ID", "national ID numbers", "drop", _DIRECT, check=v.is_national_id,
         name_words=frozenset({"ssn", "nino", "nin", "nationalid", "passport", "taxid", "tin", "sin", "nif", "dni",
                               "nie", "aadhaar", "socialsecurity", "ninumber", "bsn", "cpf", "curp",
                               "nationalinsurance"}),
         shape=lambda text: v.digit_count(text) >= 4,
         in_text=InText(token=re.compile(r"[A-Z0-9-]{1,11}"), words=5, digits=(6, 9))),
    Kind("phone", "phone number", "phone numbers", "drop", _DIRECT, check=v.is_phone,
         name_words=frozenset({"phone", "telephone", "tel", "mobile", "cellphone", "fax", "msisdn", "phonenumber",
                               "contactnumber", "contactno"}),
         shape=lambda text: v.digit_count(text) >= 6,
         in_text=InText(token=_NUMERIC_WORD, words=8, digits=(7, 21), singles=2)),
    Kind("name", "name", "person names", "drop", _DIRECT, shape=lambda text: any(c.isalpha() for c in text),
         content=looks_like_name),
    Kind("address", "street address", "street addresses", "drop", _DIRECT,
         name_words=frozenset({"address", "addr", "street", "streetaddress", "addressline", "address1", "address2"}),
         not_words=frozenset({"email", "mail", "ip", "ipv4", "ipv6", "mac", "web", "url", "wallet", "memory", "hex",
                              "country", "state", "city", "region", "province", "county", "type", "status",
                              "verified", "valid", "zip", "postcode", "postal", "kind", "count"}),
         shape=_address_shape, content=lambda text: ADDRESS.match(text) is not None),
    Kind("postcode", "postcode", "postcodes", "generalise", f"{_SWEENEY}: only its first 3 characters, the area, "
         "are kept", options=MappingProxyType({"keep": 3}),
         name_words=frozenset({"postcode", "postalcode", "zip", "zipcode", "plz", "postleitzahl", "codepostal"}),
         shape=lambda text: any(c.isdigit() for c in text) and len(text) <= 10, content=_is_postcode),
    # Postcode, birth date and sex single out most people together (Sweeney 2000: 87% of the
    # US); coarse versions keep most of their signal.
    Kind("birth_date", "birth date", "birth dates", "generalise", f"{_SWEENEY}: kept as its month",
         options=MappingProxyType({"to": "month"}),
         name_words=frozenset({"dob", "birthdate", "birthday", "birth", "born", "dateofbirth", "birthyear"}),
         not_words=frozenset({"weight", "place", "country", "city", "order", "rank", "length", "height"}),
         shape=lambda text: _year(text) if text.isdigit() else v.digit_count(text) >= 4),
    Kind("age", "age", "ages", "generalise", "a quasi-identifier: uncomment to keep it as bands of 10 years (not "
         "on by default: on its own an age identifies nobody, and bands cost the model signal)",
         options=MappingProxyType({"width": 10}), name_words=frozenset({"age"}),
         shape=lambda text: _NUMBER.fullmatch(text) is not None),
    Kind("person_id", "person id", "a person's id", "hash", "a keyed HMAC keeps it joinable and never in clear",
         shape=lambda text: _ID_TOKEN.fullmatch(text) is not None and any(c.isdigit() for c in text)),
)
KINDS_BY_KEY = {kind.key: kind for kind in KIND_TABLE}
STRUCTURED = tuple(kind for kind in KIND_TABLE if kind.check is not None)

BY_CONTENT = tuple(kind for kind in KIND_TABLE if kind.content is not None)


def year(text: str) -> bool:
    """A four-digit year of birth."""
    return _year(text)


def detect_value(value: str) -> str | None:
    """The kind of one structured value: ``email``, ``phone``, ``card``, ``national_id``,
    ``iban`` or ``ip``; None for anything else (names and addresses need a column's context)."""
    text = v.normalise(value.strip())
    if not 3 <= len(text) <= 120:
        return None
    for kind in STRUCTURED:
        if kind.check is not None and kind.check(text):
            return kind.key
    return None
