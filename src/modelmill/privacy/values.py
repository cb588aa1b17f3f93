"""Checks of single structured values: e-mails, phone numbers, card numbers, national IDs,
IBANs and IP addresses, by pattern and, where the format has one, by checksum (Luhn for
cards, mod-97 of ISO 13616 for IBANs, the SSA's rules for US SSNs, HMRC's prefix rules for
UK National Insurance numbers, the mod-23 letter of Spanish DNI/NIE).

Every check takes one value as written, fullwidth digits and the like already folded by
:func:`normalise`; none of them scans text (see :mod:`modelmill.privacy.text`).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

# The look-behind starts a match only where a local part can start: without it, a long run of
# such characters with no @ is tried from each of its positions (quadratic time on 100 kB).
# Local parts and domains may hold any letter (RFC 6531, internationalised addresses).
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~.-]"
EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}{{1,64}}@(?:[^\W_](?:[\w-]{{0,61}}[^\W_])?\.)+[^\W\d_]{{2,24}}(?![\w-])")
_NAMED_ADDRESS = re.compile(r"[^<>@]{0,80}<([^<>]+)>")  # John Smith <john@example.com>
_CARD = re.compile(r"\d(?:(?:[ .-]| {2})?\d){12,18}")
_SSN = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})")
_NINO = re.compile(r"([A-Z])([A-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?[A-D]")
_DNI = re.compile(r"([XYZ]\d{7}|\d{8})-?([A-Z])")
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
# Lengths by country, from SWIFT's IBAN registry: a code with another prefix is no IBAN.
_IBAN_LENGTHS = {country: int(length) for country, length in (item.split(":") for item in (
    "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 CY:28 CZ:24 DE:22 DK:18 "
    "DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 IE:22 IL:23 "
    "IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 ME:22 MK:19 MR:27 "
    "MT:31 MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 SE:24 SI:19 SK:24 SM:27 "
    "ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20").split())}
IBAN_COUNTRIES = tuple(_IBAN_LENGTHS)
# 10.0.0.1, 10.0.0.1:8080, [2001:db8::1]:443, fe80::1%eth0, ::1
_IP = re.compile(r"\[(?P<bracketed>[0-9A-Fa-f:.]+(?:%\w+)?)\](?::\d{1,5})?"
                 r"|(?P<v4>(?:\d{1,3}\.){3}\d{1,3})(?::\d{1,5})?|(?P<bare>[0-9A-Fa-f.]*(?::[0-9A-Fa-f.]*)+(?:%\w+)?)")
_PHONE = re.compile(r"(?:\+|00)?\(?\d[\d ()./-]{5,22}\d")
_NANP = re.compile(r"(?:1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}")
_EXTENSION = re.compile(r"(?<=\d)\s*[,;]?\s*(?:x|ext\.?|extension)\s*\d{1,6}", re.IGNORECASE)
_DOUBLED_SEPARATOR = re.compile(r"[ ./-]{2,}")
_SEPARATOR = re.compile(r"[ .()/-]+")
_NOT_DIGIT = re.compile(r"\D")


def normalise(text: str) -> str:
    """``text`` with each character that NFKC folds into one other (fullwidth digits and
    letters, superscripts) folded, so that every offset into it is one into ``text``."""
    if text.isascii():
        return text
    return "".join(n if len(n := unicodedata.normalize("NFKC", c)) == 1 else c for c in text)


def is_email(text: str) -> bool:
    named = _NAMED_ADDRESS.fullmatch(text)
    return EMAIL.fullmatch(named.group(1).strip() if named else text) is not None


def is_card(text: str) -> bool:
    """Luhn-valid with the prefix and length of a card scheme (a random Luhn-valid number
    of 16 digits is one in ten; one with a scheme's prefix is far rarer among codes)."""
    if _CARD.fullmatch(text) is None:
        return False
    digits = _NOT_DIGIT.sub("", text)
    return _card_scheme(digits) and _luhn(digits)


def _card_scheme(digits: str) -> bool:
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return ((digits[0] == "4" and n in (13, 16, 19))                     # Visa
            or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
            or (two in (34, 37) and n == 15)                             # American Express
            or ((four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649 or two == 62) and 16 <= n <= 19)
            or (3528 <= four <= 3589 and 16 <= n <= 19)                  # JCB
            or ((two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305) and n == 14))  # Diners


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        d = int(char) * (2 if position % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def national_id_form(text: str) -> str | None:
    """``ssn``, ``nino`` or ``dni`` when ``text`` is a valid one, else None."""
    if _is_ssn(text):
        return "ssn"
    upper = text.upper()
    if _is_nino(upper):
        return "nino"
    return "dni" if _is_dni(upper) else None


def is_national_id(text: str) -> bool:
    return national_id_form(text) is not None


def _is_ssn(text: str) -> bool:
    """US SSN with separators (bare nine digits are too often other codes): area not 000,
    666 or 9xx, group not 00, serial not 0000 (SSA, Social Security Number Randomization)."""
    m = _SSN.fullmatch(text)
    if m is None:
        return False
    area, group, serial = m.group(1), m.group(3), m.group(4)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _is_nino(text: str) -> bool:
    """UK National Insurance number: HMRC rules out D, F, I, Q, U, V as either prefix letter,
    O as the second, and the prefixes BG, GB, KN, NK, NT, TN and ZZ."""
    m = _NINO.fullmatch(text)
    if m is None:
        return False
    first, second = m.group(1), m.group(2)
    return (first not in "DFIQUV" and second not in "DFIOQUV"
            and first + second not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"))


def _is_dni(text: str) -> bool:
    """Spanish DNI/NIE: the letter is the number mod 23 looked up in the Interior Ministry's table."""
    m = _DNI.fullmatch(text)
    if m is None:
        return False
    number = m.group(1).replace("X", "0").replace("Y", "1").replace("Z", "2")
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23] == m.group(2)


def is_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or _IBAN.fullmatch(compact) is None:
        return False
    moved = compact[4:] + compact[:4]
    return int(moved.translate(_BASE36)) % 97 == 1


_BASE36 = {ord(c): str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address, with a port, brackets or a zone (``%eth0``) as written in logs."""
    m = _IP.fullmatch(text) if len(text) <= 64 else None
    if m is None:
        return False
    address = m.group("bracketed") or m.group("v4") or m.group("bare")
    if not any(c.isdigit() or c in "abcdefABCDEF" for c in address.split("%")[0]):
        return False  # "::" alone is punctuation more often than an address
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def is_phone(text: str) -> bool:
    """International (+ or 00, 8–15 digits: E.164), North American (area and exchange
    codes start 2–9), or national with a trunk 0 (9–12 digits in groups, as in the UK,
    France, Germany, India), each with an extension or not: shapes that dates, amounts and
    plain numbers do not take."""
    text = _EXTENSION.sub("", text, count=1) if "x" in text.lower() else text
    if _PHONE.fullmatch(text) is None or _DOUBLED_SEPARATOR.search(text.replace(") ", ")")):
        return False
    if text.count("(") != text.count(")") or text.count("(") > 1:
        return False
    digits = _NOT_DIGIT.sub("", text)
    separated = _SEPARATOR.search(text) is not None
    if text.startswith("+"):
        return digits[0] != "0" and (8 if separated else 10) <= len(digits) <= 15
    if text.startswith("00"):
        return digits[2] != "0" and 8 <= len(digits) - 2 <= 15 and (separated or len(digits) >= 13)
    if _NANP.fullmatch(text):
        return True
    groups = _SEPARATOR.split(text)
    return (digits[0] == "0" and 9 <= len(digits) <= 12 and separated
            and all(len(g) >= 2 for g in groups if g))


def digit_count(text: str) -> int:
    """Digits in ``text``; none in a decimal fraction (0.8414 is no id)."""
    return sum(c.isdigit() for c in text) if not _DECIMAL.fullmatch(text) else 0


_DECIMAL = re.compile(r"[+-]?\d*\.\d+")
