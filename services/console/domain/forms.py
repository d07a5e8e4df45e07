"""What a person types into the console's forms, turned into intake's request bodies.

Pure. Amounts are typed in yuan and sent as integer fen (schemas.money); a problem names
the form field it belongs to and says what was wrong in Chinese and English, and nothing
is sent. Intake checks everything again (its 422 names the body field: `field_of` maps
it back to the form's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from schemas.identity import InvalidResidentId, mask_id, validate_resident_id
from schemas.money import MoneyError, fen_from_yuan_text

MAX_FIELD_CHARS = 2_000  # a form field longer than this is refused before parsing
MAX_IDS_PER_INCIDENT = 5_000  # household heads pasted or uploaded with one incident
MAX_UPLOAD_BYTES = 256 * 1024
_ID_SPLIT = re.compile(r"[\s;，；、]+")
CASE_ID = re.compile(r"^[0-9A-Za-z_.:\-]{1,64}$")


@dataclass(frozen=True)
class Problem:
    field: str
    zh: str
    en: str


class FormInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.en}" for p in problems))
        self.problems = problems


class _Reader:
    """Reads fields of one form, collecting every problem before refusing."""

    def __init__(self, form: Mapping[str, str]) -> None:
        self.form = form
        self.problems: list[Problem] = []

    def text(self, name: str, *, required: bool = False) -> str:
        value = (self.form.get(name) or "").strip()
        if len(value) > MAX_FIELD_CHARS:
            self.problems.append(
                Problem(
                    name, f"不能超过{MAX_FIELD_CHARS}字", f"at most {MAX_FIELD_CHARS} characters"
                )
            )
            return ""
        if required and not value:
            self.problems.append(Problem(name, "必填", "required"))
        return value

    def fen(self, name: str, *, required: bool = True) -> int | None:
        value = self.text(name, required=required)
        if not value:
            return None
        try:
            return fen_from_yuan_text(value)
        except MoneyError as exc:
            self.problems.append(
                Problem(name, "金额以元为单位，最多两位小数，如 800 或 800.50", str(exc))
            )
            return None

    def count(self, name: str, low: int, high: int, default: int) -> int:
        value = self.text(name)
        if not value:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            self.problems.append(
                Problem(name, f"填写{low}到{high}之间的整数", f"a whole number {low}..{high}")
            )
            return default
        return int(value)

    def case_id(self, name: str, *, required: bool) -> str | None:
        value = self.text(name, required=required)
        if value and not CASE_ID.fullmatch(value):
            self.problems.append(
                Problem(
                    name,
                    "只能用字母、数字和 - _ . :，最多64个",
                    "letters, digits and - _ . : only, at most 64",
                )
            )
        return value or None

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(name) or (default or "")
        if value not in allowed:
            self.problems.append(Problem(name, "请选择一项", f"one of {', '.join(allowed)}"))
        return value

    def done(self) -> None:
        if self.problems:
            raise FormInvalid(self.problems)


def check_id(text: str, today: date) -> Problem | None:
    """A resident ID number as it is typed (GB 11643): None when valid. The message never
    repeats the number."""
    try:
        validate_resident_id(text.strip(), today=today)
    except InvalidResidentId as exc:
        return Problem("household_head_id", _id_zh(str(exc)), str(exc))
    return None


def _id_zh(message: str) -> str:
    if "check character" in message:
        return "身份证号校验位不对，请核对最后一位"
    if "characters, expected" in message:
        return "身份证号应为18位"
    if "17 digits" in message:
        return "身份证号应为17位数字加最后一位数字或X"
    if "birth" in message:
        return "身份证号中的出生日期不对"
    return "身份证号不正确"


def split_ids(text: str) -> list[str]:
    """Household heads' ID numbers pasted one a line (or separated by spaces, 、 or ；),
    or a CSV whose first column holds them; a line without a digit (a header) is skipped."""
    ids = []
    for line in text.splitlines():
        parts = [line.split(",")[0]] if "," in line else _ID_SPLIT.split(line)
        for part in parts:
            cleaned = part.strip().strip('"').upper()
            if any(c.isdigit() for c in cleaned):
                ids.append(cleaned)
    return ids


def household_ids(form: Mapping[str, str], upload: str, field: str, today: date) -> list[str]:
    ids = split_ids(form.get(field) or "") + split_ids(upload)
    problems = []
    if len(ids) > MAX_IDS_PER_INCIDENT:
        problems.append(
            Problem(field, f"一次最多{MAX_IDS_PER_INCIDENT}户", f"at most {MAX_IDS_PER_INCIDENT}")
        )
    for i, text in enumerate(ids[:MAX_IDS_PER_INCIDENT], start=1):
        found = check_id(text, today)
        if found is not None:
            problems.append(
                Problem(field, f"第{i}个（{mask_id(text)}）：{found.zh}", f"#{i}: {found.en}")
            )
    if problems:
        raise FormInvalid(problems[:20])
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------- the forms


def register_case(form: Mapping[str, str], town: str, today: date) -> dict[str, Any]:
    """R5: an urgent case of the town (the town registers; relief first within 24 h)."""
    r = _Reader(form)
    head = r.text("household_head_id", required=True)
    if head:
        found = check_id(head, today)
        if found is not None:
            r.problems.append(found)
    amount = r.fen("amount_yuan")
    reason = r.text("reason", required=True)
    category = r.choice(
        "category", ("emergency", "temporary_hardship", "transitional_living"), "emergency"
    )
    incident = r.case_id("incident_id", required=False)
    persons = r.count("persons", 1, 50, 1)
    case_id = r.case_id("case_id", required=False)
    r.done()
    body: dict[str, Any] = {
        "town": town,
        "urgency": "urgent",
        "category": category,
        "household_head_id": head,
        "requested_fen": amount,
        "reason": reason,
        "persons": persons,
    }
    if incident:
        body["incident_id"] = incident
    if case_id:
        body["case_id"] = case_id
    return body


def register_expenditure(form: Mapping[str, str], today: date) -> dict[str, Any]:
    """R3: an expenditure-type case, registered by county civil affairs for a town."""
    r = _Reader(form)
    town = r.text("town", required=True)
    head = r.text("household_head_id", required=True)
    if head:
        found = check_id(head, today)
        if found is not None:
            r.problems.append(found)
    amount = r.fen("amount_yuan")
    reason = r.text("reason", required=True)
    category = r.choice("category", ("serious_illness", "education", "temporary_hardship"))
    persons = r.count("persons", 1, 50, 1)
    r.done()
    return {
        "town": town,
        "urgency": "expenditure",
        "category": category,
        "household_head_id": head,
        "requested_fen": amount,
        "reason": reason,
        "persons": persons,
    }


def confirm_payment(form: Mapping[str, str], town: str) -> dict[str, Any]:
    """R5, P9: paid, to the household's own bank account (cash only where needed)."""
    r = _Reader(form)
    amount = r.fen("amount_yuan")
    method = r.choice("method", ("bank", "cash"), "bank")
    reference = r.text("bank_reference", required=method == "bank")
    r.done()
    body: dict[str, Any] = {"town": town, "amount_fen": amount, "method": method}
    if reference:
        body["bank_reference"] = reference[:64]
    return body


def paperwork(form: Mapping[str, str], town: str) -> dict[str, Any]:
    """P1: paperwork within 5 days of the advance."""
    r = _Reader(form)
    note = r.text("note")
    r.done()
    return {"town": town, "note": note}


def incident(form: Mapping[str, str], upload: str, today: date) -> dict[str, Any]:
    """R1: an accident or disaster with the households hit (pasted or uploaded)."""
    r = _Reader(form)
    town = r.text("town", required=True)
    incident_id = r.case_id("incident_id", required=True)
    kind = r.choice(
        "kind",
        ("natural_disaster", "traffic", "fire", "drowning", "workplace", "other_accident"),
    )
    subtype = r.text("disaster_subtype")
    description = r.text("description")
    dead = r.count("dead", 0, 100_000, 0)
    injured = r.count("injured", 0, 100_000, 0)
    ids: list[str] = []
    try:
        ids = household_ids(form, upload, "household_head_ids", today)
    except FormInvalid as exc:
        r.problems += exc.problems
    r.done()
    body: dict[str, Any] = {
        "town": town,
        "incident_id": incident_id,
        "kind": kind,
        "description": description,
        "casualties": {"dead": dead, "injured": injured},
        "household_head_ids": ids,
    }
    if subtype:
        body["disaster_subtype"] = subtype
    return body


def incident_update(form: Mapping[str, str], upload: str, today: date) -> dict[str, Any]:
    r = _Reader(form)
    town = r.text("town", required=True)
    note = r.text("note")
    dead = r.text("dead")
    injured = r.text("injured")
    casualties = None
    if dead or injured:
        casualties = {
            "dead": r.count("dead", 0, 100_000, 0),
            "injured": r.count("injured", 0, 100_000, 0),
        }
    ids: list[str] = []
    try:
        ids = household_ids(form, upload, "household_head_ids", today)
    except FormInvalid as exc:
        r.problems += exc.problems
    r.done()
    body: dict[str, Any] = {"town": town, "note": note, "household_head_ids_added": ids}
    if casualties is not None:
        body["casualties"] = casualties
    return body


def incident_close(form: Mapping[str, str]) -> dict[str, Any]:
    r = _Reader(form)
    town = r.text("town", required=True)
    note = r.text("note")
    r.done()
    return {"town": town, "note": note}


def review(form: Mapping[str, str], town: str) -> dict[str, Any]:
    """Review after the fact and approval above a town's authority (P2, P8), with written
    reasons (P9)."""
    r = _Reader(form)
    outcome = r.choice("outcome", ("confirmed", "top_up", "ineligible", "fraud"))
    approved = r.fen("approved_yuan", required=False) or 0
    top_up = r.fen("top_up_yuan", required=outcome == "top_up")
    fine = r.count("fine_multiple", 1, 3, 1) if outcome == "fraud" else None
    reasons = r.text("reasons", required=True)
    r.done()
    body: dict[str, Any] = {
        "town": town,
        "outcome": outcome,
        "approved_fen": approved,
        "reasons": reasons,
    }
    if top_up is not None:
        body["top_up_fen"] = top_up
    if fine is not None:
        body["fine_multiple"] = fine
    return body


def deliberation(form: Mapping[str, str], town: str) -> dict[str, Any]:
    """R6: 一事一议 decided with written reasons (P9)."""
    r = _Reader(form)
    verdict = r.choice("verdict", ("approve", "refuse"))
    approved = r.fen("approved_yuan", required=verdict == "approve")
    reasons = r.text("reasons", required=True)
    r.done()
    if verdict == "refuse":
        return {"town": town, "refused": True, "reasons": reasons}
    return {"town": town, "approved_fen": approved, "reasons": reasons}


HARDSHIP_OUTCOMES = ("case_opened", "no_relief_needed", "referred")
MAX_REFERRED_TO_CHARS = 200
MAX_DECIDED_BY_CHARS = 100


def hardship_follow_up(form: Mapping[str, str], town: str) -> dict[str, Any]:
    """Section 二, P9: civil affairs' written decision on one row of a department's list -
    a case opened (its case id), no relief needed, or referred elsewhere (to whom) - with
    the reasons and the officer who decided."""
    r = _Reader(form)
    outcome = r.choice("outcome", HARDSHIP_OUTCOMES)
    case_id = r.case_id("case_id", required=outcome == "case_opened")
    referred_to = r.text("referred_to", required=outcome == "referred")
    reasons = r.text("reasons", required=True)
    decided_by = r.text("decided_by", required=True)
    if len(referred_to) > MAX_REFERRED_TO_CHARS:
        r.problems.append(
            Problem(
                "referred_to",
                f"不能超过{MAX_REFERRED_TO_CHARS}字",
                f"at most {MAX_REFERRED_TO_CHARS} characters",
            )
        )
    if len(decided_by) > MAX_DECIDED_BY_CHARS:
        r.problems.append(
            Problem(
                "decided_by",
                f"不能超过{MAX_DECIDED_BY_CHARS}字",
                f"at most {MAX_DECIDED_BY_CHARS} characters",
            )
        )
    r.done()
    body: dict[str, Any] = {
        "town": town,
        "outcome": outcome,
        "reasons": reasons,
        "decided_by": decided_by,
    }
    # only the detail the outcome takes: a case id left in the form of a referral is not sent
    if outcome == "case_opened":
        body["case_id"] = case_id
    if outcome == "referred":
        body["referred_to"] = referred_to
    return body


def move_reserve(form: Mapping[str, str]) -> dict[str, Any]:
    """R4, P11: finance funds or replenishes a reserve."""
    r = _Reader(form)
    amount = r.fen("amount_yuan")
    r.done()
    return {"amount_fen": amount}


# intake's body fields -> the form's
_FIELDS = {
    "requested_fen": "amount_yuan",
    "amount_fen": "amount_yuan",
    "approved_fen": "approved_yuan",
    "top_up_fen": "top_up_yuan",
    "household_head_ids_added": "household_head_ids",
}


def field_of(loc: list[Any]) -> str:
    """The form field an intake 422 `loc` points at (["body", "requested_fen"] -> amount_yuan)."""
    names = [str(x) for x in loc if x not in ("body", "query", "path") and not isinstance(x, int)]
    if not names:
        return ""
    return _FIELDS.get(names[0], names[0])
