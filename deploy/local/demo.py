"""The demo: a summer flood in Qifeng and a house fire in Tianzhuang, through the intake API.

Every request carries a fixed Idempotency-Key, so playing the demo again changes nothing:
the API answers as before, and the records it produces carry the same event ids.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import date
from typing import Any

from schemas.identity import check_char
from schemas.money import yuan

QIFENG, TIANZHUANG = "370321101", "370321102"
READY_TIMEOUT_S = 90.0


def resident_id(seq: int, born: date = date(1978, 3, 14)) -> str:
    """A well-formed (GB 11643) resident ID number of Huantai, for the demo only."""
    first17 = f"370321{born:%Y%m%d}{seq:03d}"
    return first17 + check_char(first17)


def _call(api: str, token: str, method: str, path: str, body: Any, key: str) -> dict[str, Any]:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(  # noqa: S310 - the local stack's own loopback URL
        api + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode()[:500]}") from exc


def wait_ready(api: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(api + "/livez", timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the intake API did not answer at {api} within {READY_TIMEOUT_S:.0f} s")


def play(api: str, tokens: dict[str, str]) -> None:
    wait_ready(api)
    say = print

    def post(who: str, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        return _call(api, tokens[who], "POST", path, body, f"demo-{key}")

    say("demo: the emergency bureau reports a flood in Qifeng and a fire in Tianzhuang")
    post(
        "bureau",
        "/v1/incidents",
        {
            "town": QIFENG,
            "incident_id": "flood-2026-0720",
            "kind": "natural_disaster",
            "disaster_subtype": "flood",
            "description": "乌河漫堤，起凤镇三村进水",
            "household_head_ids": [resident_id(n) for n in range(1, 5)],
        },
        "flood",
    )
    post(
        "bureau",
        "/v1/incidents",
        {
            "town": TIANZHUANG,
            "incident_id": "fire-2026-0721",
            "kind": "fire",
            "description": "民房火灾",
            "casualties": {"dead": 0, "injured": 1},
            "household_head_ids": [resident_id(9)],
        },
        "fire",
    )

    say("demo: towns register urgent cases; relief first, within 24 hours (R5)")
    cases = [
        (QIFENG, "qf-001", 1, 80_000, "qifeng"),
        (QIFENG, "qf-002", 2, 100_000, "qifeng"),
        (QIFENG, "qf-003", 3, 150_000, "qifeng"),  # above the 1,000-yuan advance cap (P3)
        (TIANZHUANG, "tz-001", 9, 60_000, "tianzhuang"),
    ]
    for town, case, person, amount, who in cases:
        answer = post(
            who,
            "/v1/cases",
            {
                "town": town,
                "case_id": case,
                "urgency": "urgent",
                "category": "emergency",
                "household_head_id": resident_id(person),
                "requested_fen": amount,
                "incident_id": "flood-2026-0720" if town == QIFENG else "fire-2026-0721",
                "reason": "房屋进水，生活用品损毁" if town == QIFENG else "住房烧毁",
            },
            f"case-{case}",
        )
        say(f"  {case}: {yuan(amount)} yuan requested -> accepted at {answer.get('recorded_at')}")

    say("demo: Qifeng pays two families and confirms the payments")
    for case, amount in (("qf-001", 80_000), ("qf-002", 100_000)):
        post(
            "qifeng",
            f"/v1/cases/{case}/payments",
            {
                "town": QIFENG,
                "amount_fen": amount,
                "bank_reference": f"RCB-{case}",
            },
            f"pay-{case}",
        )

    say("demo: civil affairs registers a serious-illness case above the town's authority (P2)")
    post(
        "civil_affairs",
        "/v1/cases",
        {
            "town": QIFENG,
            "case_id": "qf-ill-001",
            "urgency": "expenditure",
            "category": "serious_illness",
            "household_head_id": resident_id(21),
            "requested_fen": 600_000,
            "reason": "大病医疗自付费用过高",
        },
        "case-ill",
    )
    say("demo: done; watch the decisions on the finance dashboard")
