"""Who acts in the intake stories: tokens and principals of every role, and valid ID numbers."""

from __future__ import annotations

import uuid
from datetime import date

from schemas.envelope import Role
from schemas.identity import check_char
from services.intake.domain.tokens import Principal, TokenTable, token_hash, toml_entry

SUOZHEN = "370321001"
SHAOHAI = "370321002"
QIFENG = "370321101"
KEY_HEX = "756e69742d746573742d6b65792d30313233343536"  # "unit-test-key-0123456"
KEY = bytes.fromhex(KEY_HEX)


def make_id(seq: int = 123, born: date = date(1980, 5, 17), region: str = "370321") -> str:
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + check_char(first17)


def bad_check(id_number: str) -> str:
    """The same number with a wrong check character."""
    wrong = "0" if id_number[-1] != "0" else "1"
    return id_number[:-1] + wrong


TOKENS: dict[str, tuple[Role, str, str | None]] = {
    "tok-bureau": (Role.EMERGENCY_BUREAU, "桓台县应急管理局", None),
    "tok-suozhen": (Role.TOWN, "索镇街道办事处", SUOZHEN),
    "tok-shaohai": (Role.TOWN, "少海街道办事处", SHAOHAI),
    "tok-civil": (Role.CIVIL_AFFAIRS, "桓台县民政局", None),
    "tok-finance": (Role.FINANCE, "桓台县财政局", None),
    "tok-dept": (Role.DEPARTMENT, "桓台县医疗保障局", None),
    "tok-auditor": (Role.AUDITOR, "桓台县审计局", None),
}


def principal(token: str) -> Principal:
    role, org, town = TOKENS[token]
    return Principal(sha256=token_hash(token), role=role, org=org, town=town)


def token_table() -> TokenTable:
    return TokenTable({token_hash(t): principal(t) for t in TOKENS})


def auth(token: str) -> dict[str, str]:
    """The bearer token and a fresh Idempotency-Key (every write needs one; reads ignore
    it). A test of retries sets its own key over this one."""
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": f"t-{uuid.uuid4()}"}


def tokens_toml() -> str:
    """The same principals as a tokens file (for an intake started as its own process)."""
    return "\n".join(toml_entry(principal(t)) for t in TOKENS)
