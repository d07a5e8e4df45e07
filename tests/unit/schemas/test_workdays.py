"""P7's working days: the State Council's holidays and make-up working days, dated."""

from __future__ import annotations

from datetime import date

import pytest

from schemas.towns import ConfigError
from schemas.workdays import CalendarNotConfigured, calendar_from, load_calendar

CAL = load_calendar()


def test_the_spring_festival_week_is_no_working_week_and_its_saturdays_are() -> None:
    # 2026: 春节 15-23 Feb off; Saturday 14 Feb and Saturday 28 Feb are worked
    assert CAL.is_working_day(date(2026, 2, 14))  # a make-up Saturday
    assert not CAL.is_working_day(date(2026, 2, 16))  # a Monday of the holiday
    assert not CAL.is_working_day(date(2026, 2, 23))  # its last day, a Monday
    assert CAL.is_working_day(date(2026, 2, 24))
    assert CAL.is_working_day(date(2026, 2, 28))  # make-up Saturday
    assert not CAL.is_working_day(date(2026, 3, 7))  # an ordinary Saturday


def test_ten_working_days_over_the_spring_festival() -> None:
    # approved Tuesday 10 Feb: 11, 12, 13, Sat 14, [15-23 off], 24, 25, 26, 27, Sat 28, Mon 2 Mar
    assert CAL.add_working_days(date(2026, 2, 10), 10) == date(2026, 3, 2)


def test_ten_working_days_over_national_day_count_the_make_up_saturday() -> None:
    # approved Monday 28 Sep: 29, 30, [1-7 Oct off], 8, 9, Sat 10 (make-up), 12 ... 16
    assert CAL.add_working_days(date(2026, 9, 28), 10) == date(2026, 10, 16)
    # without the make-up Saturday it would be the 19th: the configuration is what counts
    assert CAL.is_working_day(date(2026, 10, 10))


def test_an_ordinary_fortnight_is_ten_weekdays() -> None:
    assert CAL.add_working_days(date(2026, 3, 2), 10) == date(2026, 3, 16)
    # the start day does not count, even when it is a holiday or a weekend
    assert CAL.add_working_days(date(2026, 3, 7), 1) == date(2026, 3, 9)
    assert CAL.add_working_days(date(2026, 3, 7), 0) == date(2026, 3, 7)


def test_a_year_not_configured_is_never_guessed() -> None:
    with pytest.raises(CalendarNotConfigured, match="2027"):
        CAL.add_working_days(date(2026, 12, 24), 10)
    with pytest.raises(CalendarNotConfigured):
        CAL.is_working_day(date(2025, 12, 31))
    assert CAL.last_day == date(2026, 12, 31)


def test_a_calendar_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a weekend day"):
        calendar_from(
            {
                "years": [2026],
                "holidays": [
                    {
                        "name": "x",
                        "dates": [date(2026, 1, 1)],
                        "makeup_workdays": [date(2026, 1, 5)],
                    }
                ],
            }
        )
    with pytest.raises(ConfigError, match="not a listed year"):
        calendar_from({"years": [2026], "holidays": [{"name": "x", "dates": [date(2027, 1, 1)]}]})
    with pytest.raises(ConfigError, match="both a holiday and a make-up"):
        calendar_from(
            {
                "years": [2026],
                "holidays": [
                    {"name": "a", "dates": [date(2026, 1, 3)]},
                    {
                        "name": "b",
                        "dates": [date(2026, 1, 1)],
                        "makeup_workdays": [date(2026, 1, 3)],
                    },
                ],
            }
        )
