"""Who may list cases: a town its own town only; the bureau an incident's cases; county
staff any town's; a department none."""

from __future__ import annotations

from services.intake.domain.authz import may_list_cases
from tests.unit.intake.people import SHAOHAI, SUOZHEN, principal


def test_a_town_lists_only_its_own_town() -> None:
    town = principal("tok-suozhen")
    assert may_list_cases(town, SUOZHEN, None).allowed
    assert not may_list_cases(town, SHAOHAI, None).allowed
    assert not may_list_cases(town, None, None).allowed  # every town's: no
    assert not may_list_cases(town, SHAOHAI, "flood-1").allowed


def test_the_bureau_lists_an_incidents_cases() -> None:
    bureau = principal("tok-bureau")
    assert may_list_cases(bureau, None, "flood-1").allowed
    assert not may_list_cases(bureau, SUOZHEN, None).allowed


def test_county_staff_list_any_town_a_department_none() -> None:
    for token in ("tok-civil", "tok-finance", "tok-auditor"):
        assert may_list_cases(principal(token), None, None).allowed
        assert may_list_cases(principal(token), SHAOHAI, None).allowed
    assert not may_list_cases(principal("tok-dept"), SUOZHEN, None).allowed
