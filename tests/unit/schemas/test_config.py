"""Towns and policy figures come from configuration, validated with clear messages."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from schemas.intake import ReliefCategory
from schemas.policy import Policy, PolicyError, load_config, load_policy
from schemas.towns import DEFAULT_CONFIG, ConfigError, TownKind, UnknownTown, load_county

BASE = DEFAULT_CONFIG.read_text("utf-8")
PERIODS = re.compile(r"\[\[policy\.urban_minimum_monthly\]\].*?(?=\n\[policy\.)", re.S)


def _with_periods(tmp_path: Path, periods: str) -> Path:
    path = tmp_path / "county.toml"
    path.write_text(PERIODS.sub(lambda _: periods.strip() + "\n", BASE, count=1), "utf-8")
    return path


def test_huantai_has_nine_towns_each_with_a_50000_yuan_reserve() -> None:
    county = load_county()
    assert county.code == "370321"
    assert len(county.towns) == 9
    assert {t.name_en for t in county.towns} == {
        "Suozhen",
        "Shaohai",
        "Qifeng",
        "Tianzhuang",
        "Jingjia",
        "Maqiao",
        "Xincheng",
        "Tangshan",
        "Guoli",
    }
    assert [t.name_zh for t in county.towns if t.kind is TownKind.SUBDISTRICT] == [
        "索镇街道",
        "少海街道",
    ]
    assert all(t.reserve_fen == 5_000_000 for t in county.towns)  # R4
    qifeng = county.town("370321101")
    assert qifeng.name_zh == "起凤镇" and "370321101" in county
    with pytest.raises(UnknownTown, match="999999999"):
        county.town("999999999")


def test_the_default_policy_figures_and_their_rules() -> None:
    policy = load_policy()
    assert policy.urban_minimum_on(date(2023, 1, 1)) == 92_400  # P4
    assert policy.urban_minimum_on(date(2022, 12, 31)) == 87_000
    assert policy.urban_minimum_on(date(2030, 6, 1)) == 92_400
    with pytest.raises(PolicyError, match="2021-12-31"):
        policy.urban_minimum_on(date(2021, 12, 31))
    assert policy.band_fen(ReliefCategory.SERIOUS_ILLNESS, date(2024, 1, 1)) == (
        277_200,
        1_108_800,  # P4: 2,772-11,088 yuan
    )
    assert policy.band_fen(ReliefCategory.EDUCATION, date(2024, 1, 1))[1] == 6 * 92_400
    with pytest.raises(PolicyError):
        policy.band_for(ReliefCategory.EMERGENCY)
    assert policy.advance_cap_fen == 100_000  # P3
    assert policy.town_approval_limit_fen == 300_000  # P2
    assert policy.relief_deadline == timedelta(hours=24)  # R5
    assert policy.paperwork_deadline == timedelta(days=5)  # P1
    assert policy.relief_warning_lead == timedelta(hours=4)
    assert (policy.fraud_fine_multiples.min, policy.fraud_fine_multiples.max) == (1, 3)  # P8
    assert policy.reserve_low_threshold_fen(5_000_000) == 1_000_000
    assert (policy.transitional_period_months, policy.transitional_max_months) == (3, 6)  # P5
    assert Policy.rule_of("advance_cap_fen") == "P3"
    assert Policy.rule_of("disclosure_working_days") == "P7"
    for name in Policy.model_fields:
        assert Policy.rule_of(name)  # every figure names its rule
        assert Policy.source_of(name)  # ... and where it comes from (docs/policy.md)
    # only the R3 bands and R5's hours are Huantai's own; the rest say they are not
    own = {n for n in Policy.model_fields if Policy.source_of(n).startswith("桓政字")}
    assert own == {"illness_multiples", "education_multiples", "relief_deadline_h"}
    for name in ("advance_cap_fen", "town_approval_limit_fen", "paperwork_deadline_d"):
        assert "not in the county's text" in Policy.source_of(name)
    assert "example" in Policy.source_of("urban_minimum_monthly")
    # R3/R6: categories with no band in the text have a configured ceiling
    assert policy.ceiling_fen(ReliefCategory.TEMPORARY_HARDSHIP, date(2024, 1, 1)) == (0, 554_400)
    assert policy.fine_band_fen(80_000) == (80_000, 240_000)  # P8
    assert load_config().county.codes() == load_county().codes()


def test_an_explicit_path_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(BASE.replace("advance_cap_fen = 100_000", "advance_cap_fen = 50_000"))
    assert load_policy(path).advance_cap_fen == 50_000
    assert load_policy(str(path)).advance_cap_fen == 50_000


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ("", "urban_minimum_monthly: Field required"),
        (
            """
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 92_400
            [[policy.urban_minimum_monthly]]
            effective_from = 2022-01-01
            amount_fen = 87_000
            """,
            "out of order",
        ),
        (
            """
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 92_400
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 87_000
            """,
            "overlapping",
        ),
        (
            """
            [[policy.urban_minimum_monthly]]
            effective_from = 2022-01-01
            effective_until = 2023-06-01
            amount_fen = 87_000
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 92_400
            """,
            "overlapping",
        ),
        (
            """
            [[policy.urban_minimum_monthly]]
            effective_from = 2022-01-01
            effective_until = 2022-06-01
            amount_fen = 87_000
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 92_400
            """,
            "gap",
        ),
        (
            """
            [[policy.urban_minimum_monthly]]
            amount_fen = 92_400
            """,
            "effective_from: Field required",
        ),
        (
            """
            [[policy.urban_minimum_monthly]]
            effective_from = 2023-01-01
            amount_fen = 924.0
            """,
            "amount_fen",
        ),
    ],
)
def test_bad_effective_dates_are_errors_that_say_where(
    tmp_path: Path, periods: str, message: str
) -> None:
    path = _with_periods(tmp_path, periods)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("relief_warning_lead_h = 4", "relief_warning_lead_h = 30", "relief_warning_lead_h"),
        (
            "transitional_period_months = 3",
            "transitional_period_months = 7",
            "transitional_period_months",
        ),
        (
            "min = 3\nmax = 12",
            "min = 13\nmax = 12",
            "band min 13 is above max 12",
        ),
        ("advance_cap_fen = 100_000", "advance_cap_fen = 100_000\nsurprise = 1", "surprise"),
    ],
)
def test_inconsistent_figures_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASE
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(old, new), "utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_unreadable_or_incomplete_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[policy\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"missing \[county\]"):
        load_county(empty)
    dupes = tmp_path / "dupes.toml"
    dupes.write_text(BASE.replace('code = "370321002"', 'code = "370321001"'))
    with pytest.raises(ConfigError, match="listed twice: 370321001"):
        load_county(dupes)
