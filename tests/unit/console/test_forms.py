"""The console's forms and figures: yuan typed become exact fen, bad input names its field
in Chinese and English, ID numbers are checked as typed and never repeated, money and
dates are shown as a clerk reads them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from schemas.identity import check_char
from services.console.domain import forms, show

TODAY = date(2025, 7, 20)
QIFENG = "370321101"


def rid(n: int) -> str:
    first17 = f"37032119800101{n:03d}"
    return first17 + check_char(first17)


def test_an_urgent_case_in_yuan_becomes_fen() -> None:
    body = forms.register_case(
        {"household_head_id": rid(1), "amount_yuan": "650.50", "reason": "房屋进水"}, QIFENG, TODAY
    )
    assert body["requested_fen"] == 65_050
    assert (body["town"], body["urgency"], body["category"]) == (QIFENG, "urgent", "emergency")


def test_every_problem_is_named_and_nothing_is_built() -> None:
    bad = rid(1)[:-1] + ("0" if rid(1)[-1] != "0" else "1")
    with pytest.raises(forms.FormInvalid) as caught:
        forms.register_case({"household_head_id": bad, "amount_yuan": "1.234"}, QIFENG, TODAY)
    fields = {p.field: p for p in caught.value.problems}
    assert set(fields) == {"household_head_id", "amount_yuan", "reason"}
    assert "校验位" in fields["household_head_id"].zh
    assert bad not in str(caught.value) and bad[6:14] not in fields["household_head_id"].en


@pytest.mark.parametrize("text", ["0", "-5", "1e3", "12.345", "abc"])
def test_amounts_that_are_not_exact_yuan_are_refused(text: str) -> None:
    with pytest.raises(forms.FormInvalid):
        forms.move_reserve({"amount_yuan": text})


def test_household_ids_pasted_or_uploaded() -> None:
    pasted = f"{rid(1)}\n{rid(2)}、{rid(3)}"
    upload = f"household_head_id,note\n{rid(4)},x\n{rid(1)},dup\n"
    body = forms.incident(
        {"town": QIFENG, "incident_id": "flood-1", "kind": "natural_disaster",
         "household_head_ids": pasted},
        upload,
        TODAY,
    )  # fmt: skip
    assert body["household_head_ids"] == [rid(1), rid(2), rid(3), rid(4)]


def test_a_bank_payment_needs_its_reference_cash_does_not() -> None:
    with pytest.raises(forms.FormInvalid):
        forms.confirm_payment({"amount_yuan": "800"}, QIFENG)
    assert (
        forms.confirm_payment({"amount_yuan": "800", "method": "cash"}, QIFENG)["method"] == "cash"
    )


def test_a_deliberation_refused_or_approved_with_reasons() -> None:
    assert forms.deliberation({"verdict": "refuse", "reasons": "不符合"}, QIFENG)["refused"]
    with pytest.raises(forms.FormInvalid):
        forms.deliberation({"verdict": "approve", "reasons": "符合"}, QIFENG)


def test_intake_fields_map_back_to_the_form() -> None:
    assert forms.field_of(["body", "requested_fen"]) == "amount_yuan"
    assert forms.field_of(["body", "household_head_ids", 2]) == "household_head_ids"


def test_figures_as_a_person_reads_them() -> None:
    assert show.money(245_050) == "¥2,450.50"
    assert show.money(5) == "¥0.05"
    moment = datetime(2025, 7, 19, 17, 5, tzinfo=UTC)  # 01:05 on the 20th in Huantai
    assert show.date_zh(moment) == "2025年7月20日 01:05"
    assert show.countdown(moment + timedelta(hours=5, minutes=12), moment) == (
        "还剩 5小时12分",
        "ok",
    )
    assert show.countdown(moment + timedelta(hours=3), moment)[1] == "soon"
    assert show.countdown(moment - timedelta(minutes=61), moment) == ("已超时 1小时01分", "late")
    assert (show.zh("awaiting_approval"), show.en("awaiting_approval")) == (
        "待县级审批",
        "awaiting approval",
    )


# ---------------------------------------------------------------- hardship lists (section 二)


def test_a_hardship_follow_up_sends_only_what_its_outcome_takes() -> None:
    form = {
        "outcome": "case_opened",
        "case_id": "exp-0721-1",
        "referred_to": "县残联",  # left over from a choice changed: not sent
        "reasons": "入户核实：大病支出",
        "decided_by": "王科长",
    }
    assert forms.hardship_follow_up(form, QIFENG) == {
        "town": QIFENG,
        "outcome": "case_opened",
        "case_id": "exp-0721-1",
        "reasons": "入户核实：大病支出",
        "decided_by": "王科长",
    }
    referred = forms.hardship_follow_up({**form, "outcome": "referred"}, QIFENG)
    assert referred["referred_to"] == "县残联" and "case_id" not in referred
    none_needed = forms.hardship_follow_up({**form, "outcome": "no_relief_needed"}, QIFENG)
    assert "case_id" not in none_needed and "referred_to" not in none_needed


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"case_id": ""}, {"case_id"}),  # a case opened names its case
        ({"case_id": "exp 1"}, {"case_id"}),
        ({"outcome": "referred", "referred_to": ""}, {"referred_to"}),
        ({"outcome": "referred", "referred_to": "县" * 201}, {"referred_to"}),
        ({"reasons": "  ", "decided_by": ""}, {"reasons", "decided_by"}),  # P9
        ({"decided_by": "王" * 101}, {"decided_by"}),
        ({"outcome": "closed"}, {"outcome"}),
    ],
)
def test_a_hardship_follow_up_that_does_not_add_up_names_each_field(
    changes: dict[str, str], fields: set[str]
) -> None:
    form = {"outcome": "case_opened", "case_id": "exp-1", "reasons": "核实", "decided_by": "王"}
    with pytest.raises(forms.FormInvalid) as caught:
        forms.hardship_follow_up({**form, **changes}, QIFENG)
    assert {p.field for p in caught.value.problems} == fields
    assert all(p.zh and p.en for p in caught.value.problems)


def test_days_in_chinese() -> None:
    assert show.day_zh("2026-07-20") == "2026年7月20日"
    assert show.day_zh(date(2026, 1, 2)) == "2026年1月2日"
    assert show.day_zh(None) == "—" and show.day_zh("") == "—"
    assert show.day_zh("not a day") == "not a day"
