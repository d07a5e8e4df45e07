"""Resident identity numbers (GB 11643-1999) and the keyed hashes that replace them.

A clear ID number is validated at intake and never enters the log: records carry a
`household_ref` ("h_" + 32 hex) or `person_ref` ("p_" + 32 hex), an HMAC-SHA256 under a
key that only intake holds (docs/design.md "personal data stays out of the log"; policy P7,
P10). Error messages show a masked number only (first 3 and last 2 characters).
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import re
from datetime import date
from typing import Annotated

from pydantic import StringConstraints

ID_LENGTH = 18
# ISO 7064 MOD 11-2 weights of the first 17 digits: 2^(17-i) mod 11
_WEIGHTS = tuple(pow(2, ID_LENGTH - 1 - i, 11) for i in range(ID_LENGTH - 1))
_CHECK_CHARS = "10X98765432"  # index = weighted sum mod 11
# A keyed hash needs a real key: shorter keys are refused (STYLE "a limit on everything").
MIN_KEY_BYTES = 16
REF_HEX_CHARS = 32
EARLIEST_BIRTH = date(1900, 1, 1)

_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
# Anything in free text that looks like a resident ID number (used to scrub messages).
ID_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")

HouseholdRef = Annotated[
    str, StringConstraints(pattern=r"^h_[0-9a-f]{32}$", min_length=34, max_length=34)
]
"""The keyed hash of a household head's ID number: "h_" + 32 lowercase hex."""

PersonRef = Annotated[
    str, StringConstraints(pattern=r"^p_[0-9a-f]{32}$", min_length=34, max_length=34)
]
"""The keyed hash of a person's ID number: "p_" + 32 lowercase hex."""


# P7: a recipient's name is published masked: its first character (the surname, in most
# Chinese names) and a full-width star for each further character, "张三丰" -> "张＊＊".
# The clear name is masked at intake's door and never enters a record or a log.
NAME_STAR = "\uff0a"  # ＊ FULLWIDTH ASTERISK
MIN_NAME_CHARS = 2
MAX_NAME_CHARS = 30
# a clear name: letters of any script, with the middle dot of transliterated names
_NAME_CHAR = re.compile(r"^[^\W\d_]$|^[·•]$")

PublicName = Annotated[
    str,
    StringConstraints(
        pattern=rf"^[^\s\d{NAME_STAR}*·•]{NAME_STAR}+$",
        min_length=MIN_NAME_CHARS,
        max_length=MAX_NAME_CHARS,
    ),
]
"""A masked name as records carry it: one character and at least one ＊ (P7)."""


class InvalidName(ValueError):
    """A recipient's name that cannot be masked; the message never repeats the name."""


def public_name(name: str) -> str:
    """The name as it may be published (P7): the first character, then ＊ for each
    further character. Refuses what is not a name (digits, too short or too long), so an
    ID number typed into the name field is never masked into something published."""
    text = name.strip()
    chars = [c for c in text if not c.isspace()]
    if not MIN_NAME_CHARS <= len(chars) <= MAX_NAME_CHARS:
        raise InvalidName(
            f"a name has {MIN_NAME_CHARS} to {MAX_NAME_CHARS} characters (spaces aside), "
            f"this one has {len(chars)}"
        )
    for i, c in enumerate(chars):
        if not _NAME_CHAR.match(c) or (i == 0 and c in "·•"):
            kind = "a digit" if c.isdigit() else "a character that is not a letter"
            raise InvalidName(f"a name holds letters only; character {i + 1} is {kind}")
    return chars[0] + NAME_STAR * (len(chars) - 1)


class InvalidResidentId(ValueError):
    """A resident ID number failed validation; the message holds a masked number only."""


def mask_id(id_number: str) -> str:
    """The first 3 and last 2 characters, the rest starred: "370***********123X"[...]."""
    text = id_number.strip()
    if len(text) <= 5:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 5) + text[-2:]


def mask_name(name: str) -> str:
    """The first character, the rest starred: "张三丰" -> "张**" (P7: names are masked)."""
    text = name.strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def scrub_ids(text: str) -> str:
    """Mask every ID-number-like run of characters in free text (messages, dead letters)."""
    return ID_LIKE.sub(lambda m: mask_id(m.group(0)), text)


# What else in free text identifies a person: a first-generation (15-digit) ID number, a
# mobile number (1[3-9] and 9 digits, with or without +86) and a landline with its area
# code (0 + 2-3 digits, then 7-8). Spaces and dashes inside are tolerated.
OLD_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])\d{15}(?![0-9A-Za-z])")
PHONE_LIKE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?![0-9A-Za-z])"
    r"|(?<![0-9A-Za-z])0\d{2,3}[ -]?\d{7,8}(?![0-9A-Za-z])"
)


def scrub_personal(text: str) -> str:
    """Free text (a reason, a description, a note) with every run shaped like an ID number
    or a phone number masked. Kafka keeps a record for good: what a clerk types by habit
    ("call her on 138...") must not land there (issue: personal data). Idempotent."""
    text = scrub_ids(text)
    text = OLD_ID_LIKE.sub(lambda m: mask_id(m.group(0)), text)
    return PHONE_LIKE.sub(lambda m: mask_id(m.group(0)), text)


def check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2) of the first 17 digits."""
    if len(first17) != ID_LENGTH - 1 or not first17.isdigit() or not first17.isascii():
        raise InvalidResidentId("the check character needs exactly 17 digits")
    total = sum(map(operator.mul, map(int, first17), _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def validate_resident_id(id_number: str, *, today: date | None = None) -> str:
    """The normalised number (upper-case X) if valid, else InvalidResidentId.

    Checks: 18 characters, 17 digits and a digit or X; region code (first 6) not 000000;
    a real date of birth between 1900-01-01 and `today` (the caller's date: intake passes
    its own, rules never read a wall clock); the MOD 11-2 check character.
    """
    text = id_number.strip().upper()
    masked = mask_id(text)
    if len(text) != ID_LENGTH:
        raise InvalidResidentId(
            f"resident ID {masked}: {len(text)} characters, expected {ID_LENGTH}"
        )
    if not text.isascii() or not _SHAPE.fullmatch(text):
        raise InvalidResidentId(f"resident ID {masked}: expected 17 digits and a final digit or X")
    if text[:6] == "000000":
        raise InvalidResidentId(f"resident ID {masked}: region code 000000 does not exist")
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError as exc:
        raise InvalidResidentId(f"resident ID {masked}: no such date of birth") from exc
    limit = today if today is not None else date.today()
    if not EARLIEST_BIRTH <= born <= limit:
        raise InvalidResidentId(
            f"resident ID {masked}: date of birth outside {EARLIEST_BIRTH} .. {limit}"
        )
    if check_char(text[:17]) != text[17]:
        raise InvalidResidentId(f"resident ID {masked}: wrong check character")
    return text


def is_valid_resident_id(id_number: str, *, today: date | None = None) -> bool:
    try:
        validate_resident_id(id_number, today=today)
    except InvalidResidentId:
        return False
    return True


def _keyed(prefix: str, domain: bytes, id_number: str, key: bytes, today: date | None) -> str:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the hashing key must be at least {MIN_KEY_BYTES} bytes")
    normalised = validate_resident_id(id_number, today=today)
    # The domain label keeps a person's ref and a household's ref of the same number apart.
    digest = hmac.digest(key, domain + normalised.encode("ascii"), "sha256").hex()
    return prefix + digest[:REF_HEX_CHARS]


def person_ref(id_number: str, key: bytes, *, today: date | None = None) -> str:
    """ "p_" + 32 hex: HMAC-SHA256 of the validated number under `key` (InvalidResidentId
    for a number that is not one; `today` as for `validate_resident_id`)."""
    return _keyed("p_", b"person:", id_number, key, today)


def household_ref(head_id_number: str, key: bytes, *, today: date | None = None) -> str:
    """ "h_" + 32 hex: HMAC-SHA256 of the household head's validated number under `key`."""
    return _keyed("h_", b"household:", head_id_number, key, today)


def statement_ref(statement: str, key: bytes) -> str:
    """R7: "h_" + 32 hex for a vagrant who carries no ID: the keyed hash of their identity
    statement (case- and space-normalised), so the same statement gives the same household
    for P6 and the statement itself never enters the log."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the hashing key must be at least {MIN_KEY_BYTES} bytes")
    normalised = " ".join(statement.split()).casefold()
    if not normalised:
        raise ValueError("a blank identity statement names nobody")
    digest = hmac.new(key, b"statement:" + normalised.encode("utf-8"), hashlib.sha256).hexdigest()
    return "h_" + digest[:REF_HEX_CHARS]
