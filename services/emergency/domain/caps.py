"""Expenditure-type relief caps (policy R3, R6) and the light urgent-case cap (P3).

R3: serious illness -> 3-12 x, education -> 3-6 x the urban minimum-living monthly amount
in force on the case's date (P4: a dated parameter). A request inside the band is
approved at the requested amount; below the floor it is raised to the floor; above the
cap it is not refused but becomes a case-by-case deliberation (R6, 一事一议).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class CapOutcome(StrEnum):
    WITHIN = "within"
    RAISED_TO_FLOOR = "raised_to_floor"
    ABOVE_CAP = "above_cap"


class CapJudgement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: CapOutcome
    amount_fen: int  # what may be granted without deliberation
    floor_fen: int
    cap_fen: int
    urban_minimum_fen: int
    min_multiple: int
    max_multiple: int


def judge_expenditure(
    requested_fen: int, urban_minimum_fen: int, min_multiple: int, max_multiple: int
) -> CapJudgement:
    floor_fen = urban_minimum_fen * min_multiple
    cap_fen = urban_minimum_fen * max_multiple
    if requested_fen > cap_fen:
        outcome, amount = CapOutcome.ABOVE_CAP, cap_fen
    elif requested_fen < floor_fen:
        outcome, amount = CapOutcome.RAISED_TO_FLOOR, floor_fen
    else:
        outcome, amount = CapOutcome.WITHIN, requested_fen
    return CapJudgement(
        outcome=outcome,
        amount_fen=amount,
        floor_fen=floor_fen,
        cap_fen=cap_fen,
        urban_minimum_fen=urban_minimum_fen,
        min_multiple=min_multiple,
        max_multiple=max_multiple,
    )
