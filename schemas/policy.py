"""Dated policy configuration: every figure the rules use, each naming its rule.

Read from the county's TOML (`config/huantai.toml` by default; services pass the path
of RELIEF_POLICY_FILE). Figures are configurable defaults, not constants in code
(docs/policy.md, "what the county text leaves to higher rules and practice"). Each field's
`rule` (in its JSON Schema extra, see `Policy.rule_of`) says where it comes from.

The urban minimum-living monthly amount is a dated parameter (section 三, P4): a case
uses the figure in force on its date. Its periods must be given, in order, without
overlaps or gaps; anything else is refused with a message that says which period.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.intake import MAX_TRANSITIONAL_MONTHS, ReliefCategory
from schemas.money import Fen
from schemas.towns import DEFAULT_CONFIG, ConfigError, County, county_from, describe, read_config

MAX_PERIODS = 200
MAX_MULTIPLE = 100


class PolicyError(ConfigError):
    """A policy file that does not validate, or a figure asked for that is not in force."""


# Where a figure comes from (issue: every figure names its source). The county's own text
# is 桓政字〔2021〕7号; anything else is a default the county has to set for itself.
COUNTY_TEXT = "桓政字〔2021〕7号"
COUNTY_TO_SET = "not in the county's text: a default to be set by the county"


def _rule(rule: str, text: str, source: str = COUNTY_TO_SET) -> Any:
    return {
        "description": f"{rule}: {text} (source: {source})",
        "json_schema_extra": {"rule": rule, "source": source},
    }


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatedAmount(_Frozen):
    """An amount in force from `effective_from` until the next period starts, or until
    `effective_until` (exclusive) when given."""

    effective_from: date
    effective_until: date | None = None
    amount_fen: Fen

    @model_validator(mode="after")
    def _non_empty(self) -> Self:
        if self.effective_until is not None and self.effective_until <= self.effective_from:
            raise ValueError(
                f"period from {self.effective_from} ends on or before it starts "
                f"({self.effective_until})"
            )
        return self

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (
            self.effective_until is None or day < self.effective_until
        )


class MultipleBand(_Frozen):
    """An inclusive band of whole multiples, e.g. 3-12 x."""

    min: int = Field(ge=1, le=MAX_MULTIPLE, strict=True)
    max: int = Field(ge=1, le=MAX_MULTIPLE, strict=True)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"band min {self.min} is above max {self.max}")
        return self


class EmergencyMeasures(_Frozen):
    """R2: what applies to an incident's urgent cases while an emergency period declared
    for it runs. The county's text asks for emergency-period policies without figures."""

    advance_cap_fen: Fen = Field(**_rule("R2", "the advance cap during an emergency period"))
    paperwork_deadline_d: int = Field(
        ge=1, le=90, strict=True, **_rule("R2", "paperwork deadline during an emergency period")
    )


class Policy(_Frozen):
    urban_minimum_monthly: tuple[DatedAmount, ...] = Field(
        min_length=1,
        max_length=MAX_PERIODS,
        **_rule(
            "R3/P4",
            "urban minimum-living monthly amount (fen), dated periods",
            "section 三 sets the method, not the figure: the figures configured are the Zibo "
            "example of P4 (淄民〔2023〕4号) until Huantai's own are configured",
        ),
    )
    illness_multiples: MultipleBand = Field(
        **_rule("R3", "serious illness: 3-12 x the urban monthly minimum", f"{COUNTY_TEXT} 五")
    )
    education_multiples: MultipleBand = Field(
        **_rule("R3", "education costs: 3-6 x the urban monthly minimum", f"{COUNTY_TEXT} 五")
    )
    emergency_ceiling_fen: Fen = Field(
        **_rule("R3/R6", "emergency relief (no band in the text): above this, deliberation")
    )
    temporary_hardship_ceiling_fen: Fen = Field(
        **_rule("R3/R6", "temporary hardship relief (no band in the text): above, deliberation")
    )
    fraud_fine_multiples: MultipleBand = Field(
        **_rule("P8", "fraud fine: 1-3 x the amount", "社会救助暂行办法 Art. 68")
    )
    advance_cap_fen: Fen = Field(
        **_rule(
            "P3",
            "advance cap for light urgent cases (1,000 yuan)",
            "not in the county's text: Zibo city implementing rules; to be set by the county",
        )
    )
    town_approval_limit_fen: Fen = Field(
        **_rule(
            "P2",
            "a town approves below this amount (3,000 yuan); above, the county",
            "not in the county's text: Shandong 2019 practice, 社会救助暂行办法 Art. 48; "
            "to be set by the county",
        )
    )
    vagrant_interim_cap_fen: Fen = Field(
        **_rule("R7", "interim relief for a vagrant (food, lodging, a ticket home)")
    )
    emergency_period: EmergencyMeasures = Field(
        **_rule("R2", "measures while an emergency period runs")
    )
    relief_deadline_h: int = Field(
        ge=1,
        le=168,
        strict=True,
        **_rule("R5", "urgent cases: relief first within 24 hours", f"{COUNTY_TEXT} 五"),
    )
    relief_warning_lead_h: int = Field(
        ge=0, le=168, strict=True, **_rule("R5", "warning this long before the relief deadline")
    )
    paperwork_deadline_d: int = Field(
        ge=1,
        le=90,
        strict=True,
        **_rule(
            "P1",
            "paperwork within 5 days after the advance",
            "not in the county's text: Shandong practice since 2019; to be set by the county",
        ),
    )
    paperwork_warning_lead_h: int = Field(
        ge=0, le=90 * 24, strict=True, **_rule("P1", "warning this long before paperwork is due")
    )
    transitional_daily_fen_per_person: Fen = Field(
        **_rule("P5", "transitional living relief per person per day")
    )
    transitional_period_months: int = Field(
        ge=1,
        le=MAX_TRANSITIONAL_MONTHS,
        strict=True,
        **_rule(
            "P5",
            "transition period: 3 months",
            "not in the county's text: national disaster-relief practice",
        ),
    )
    transitional_max_months: int = Field(
        ge=1,
        le=MAX_TRANSITIONAL_MONTHS,
        strict=True,
        **_rule(
            "P5",
            "extendable to 6 months",
            "not in the county's text: national disaster-relief practice",
        ),
    )
    reserve_low_threshold_pct: int = Field(
        ge=0, le=100, strict=True, **_rule("R4/P11", "alert finance below this % of a reserve")
    )
    disclosure_working_days: int = Field(
        ge=1,
        le=60,
        strict=True,
        **_rule(
            "P7",
            "expenditure-type cases published within",
            "not in the county's text: local disclosure lists; 社会救助暂行办法 Art. 61, 62",
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        periods = self.urban_minimum_monthly
        for before, after in pairwise(periods):
            if after.effective_from < before.effective_from:
                raise ValueError(
                    f"urban_minimum_monthly: effective dates out of order "
                    f"({after.effective_from} is listed after {before.effective_from})"
                )
            if after.effective_from == before.effective_from:
                raise ValueError(
                    f"urban_minimum_monthly: overlapping periods: two start on "
                    f"{after.effective_from}"
                )
            if before.effective_until is not None:
                if before.effective_until > after.effective_from:
                    raise ValueError(
                        f"urban_minimum_monthly: overlapping periods: the one from "
                        f"{before.effective_from} runs until {before.effective_until}, "
                        f"after {after.effective_from}"
                    )
                if before.effective_until < after.effective_from:
                    raise ValueError(
                        f"urban_minimum_monthly: gap between {before.effective_until} and "
                        f"{after.effective_from}: no amount in force"
                    )
        if self.relief_warning_lead_h >= self.relief_deadline_h:
            raise ValueError("relief_warning_lead_h must be shorter than relief_deadline_h")
        if self.paperwork_warning_lead_h >= self.paperwork_deadline_d * 24:
            raise ValueError("paperwork_warning_lead_h must be shorter than the paperwork deadline")
        if self.transitional_period_months > self.transitional_max_months:
            raise ValueError("transitional_period_months is above transitional_max_months")
        return self

    # ------------------------------------------------------------ questions

    @classmethod
    def rule_of(cls, field: str) -> str:
        """The rule a figure comes from, e.g. Policy.rule_of("advance_cap_fen") == "P3"."""
        extra = cls.model_fields[field].json_schema_extra
        if not isinstance(extra, dict) or not isinstance(extra.get("rule"), str):
            raise KeyError(field)
        return str(extra["rule"])

    @classmethod
    def source_of(cls, field: str) -> str:
        """Where a figure comes from: the county's text, another document, or a default
        the county has to set (docs/policy.md "sources of the figures")."""
        extra = cls.model_fields[field].json_schema_extra
        if not isinstance(extra, dict) or not isinstance(extra.get("source"), str):
            raise KeyError(field)
        return str(extra["source"])

    def urban_minimum_on(self, day: date) -> int:
        """The urban minimum-living monthly amount (fen) in force on `day` (P4)."""
        for period in reversed(self.urban_minimum_monthly):
            if period.covers(day):
                return period.amount_fen
        raise PolicyError(f"no urban minimum-living amount in force on {day}")

    def band_for(self, category: ReliefCategory) -> MultipleBand:
        """R3: the multiples band of an expenditure-type category."""
        if category is ReliefCategory.SERIOUS_ILLNESS:
            return self.illness_multiples
        if category is ReliefCategory.EDUCATION:
            return self.education_multiples
        raise PolicyError(f"no R3 band for category {category.value}")

    def ceiling_fen(self, category: ReliefCategory, day: date) -> tuple[int, int]:
        """R3, R6: (floor, cap) in fen of what a case of `category` dated `day` may be
        worth without a deliberation, whatever path sets or raises it. Categories with no
        band in the county's text have no floor and a configured ceiling; transitional
        living relief is bounded by its schedule (P5), not here."""
        if category in (ReliefCategory.SERIOUS_ILLNESS, ReliefCategory.EDUCATION):
            return self.band_fen(category, day)
        if category is ReliefCategory.EMERGENCY:
            return 0, self.emergency_ceiling_fen
        if category is ReliefCategory.TEMPORARY_HARDSHIP:
            return 0, self.temporary_hardship_ceiling_fen
        raise PolicyError(f"no ceiling for category {category.value}: its schedule bounds it (P5)")

    def fine_band_fen(self, amount_fen: int) -> tuple[int, int]:
        """P8: the fine a person may decide for fraud over `amount_fen`, (least, most)."""
        band = self.fraud_fine_multiples
        return band.min * amount_fen, band.max * amount_fen

    def band_fen(self, category: ReliefCategory, day: date) -> tuple[int, int]:
        """R3: (floor, cap) in fen for an expenditure-type case dated `day`."""
        band = self.band_for(category)
        monthly = self.urban_minimum_on(day)
        return band.min * monthly, band.max * monthly

    def reserve_low_threshold_fen(self, reserve_size_fen: int) -> int:
        return reserve_size_fen * self.reserve_low_threshold_pct // 100

    @property
    def relief_deadline(self) -> timedelta:
        return timedelta(hours=self.relief_deadline_h)

    @property
    def relief_warning_lead(self) -> timedelta:
        return timedelta(hours=self.relief_warning_lead_h)

    @property
    def paperwork_deadline(self) -> timedelta:
        return timedelta(days=self.paperwork_deadline_d)

    @property
    def paperwork_warning_lead(self) -> timedelta:
        return timedelta(hours=self.paperwork_warning_lead_h)


class ReliefConfig(_Frozen):
    """One county's configuration file: its towns and its policy figures."""

    county: County
    policy: Policy


def policy_from(tables: Mapping[str, Any], source: str = "<config>") -> Policy:
    if "policy" not in tables:
        raise PolicyError(f"{source}: missing [policy] table")
    try:
        return Policy.model_validate(tables["policy"])
    except ValidationError as exc:
        raise PolicyError(f"{source}: [policy] {describe(exc)}") from exc


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy figures from `path` (callers pass RELIEF_POLICY_FILE; default: the
    packaged huantai.toml). Raises PolicyError naming the file, the field and the fault."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    return policy_from(read_config(file), str(file))


def load_config(path: str | Path | None = None) -> ReliefConfig:
    """Towns and policy from one file, read once."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    tables = read_config(file)
    return ReliefConfig(
        county=county_from(tables, str(file)), policy=policy_from(tables, str(file))
    )
