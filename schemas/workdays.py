"""Working days, for P7: expenditure-type relief is published within N working days
(10 by default, `Policy.disclosure_working_days`) of its approval.

A working day is Monday to Friday, except the State Council's public holidays, plus its
make-up working days (调休上班). Both are dated configuration
(`schemas/config/workdays-cn.toml`, RELIEF_WORKDAYS_FILE), one year at a time: a date in a
year the file does not list raises `CalendarNotConfigured` — a deadline is never guessed.
"""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from schemas.towns import ConfigError, describe

DEFAULT_WORKDAYS = Path(__file__).parent / "config" / "workdays-cn.toml"
MAX_YEARS = 50
MAX_DATES = 100  # a holiday run, or its make-up days
MAX_RUNS = 30  # holiday runs a year
MAX_WORKING_DAYS = 366  # a deadline's length at most (STYLE "a limit on everything")
_SATURDAY = 5


class CalendarNotConfigured(LookupError):
    """A date in a year the calendar does not list: its working days are unknown."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"the working-day calendar has no dates for {year}: add the State Council's "
            f"holiday notice for {year} to the workdays file"
        )
        self.year = year


class HolidayRun(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    dates: tuple[date, ...] = Field(min_length=1, max_length=MAX_DATES)
    makeup_workdays: tuple[date, ...] = Field(default=(), max_length=MAX_DATES)


class WorkingCalendar(BaseModel):
    """Public holidays and make-up working days of the years listed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    years: tuple[int, ...] = Field(min_length=1, max_length=MAX_YEARS)
    holidays: tuple[HolidayRun, ...] = Field(default=(), max_length=MAX_RUNS * MAX_YEARS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        off = self.days_off
        on = self.makeup_days
        for run in self.holidays:
            for day in (*run.dates, *run.makeup_workdays):
                if day.year not in self.years:
                    raise ValueError(f"{run.name}: {day} is in {day.year}, not a listed year")
            for day in run.makeup_workdays:
                if day.weekday() < _SATURDAY:
                    raise ValueError(f"{run.name}: make-up workday {day} is not a weekend day")
        both = sorted(off & on)
        if both:
            raise ValueError(f"{both[0]} is both a holiday and a make-up workday")
        return self

    @property
    def days_off(self) -> frozenset[date]:
        return frozenset(d for run in self.holidays for d in run.dates)

    @property
    def makeup_days(self) -> frozenset[date]:
        return frozenset(d for run in self.holidays for d in run.makeup_workdays)

    @property
    def last_day(self) -> date:
        """The last day the calendar knows."""
        return date(max(self.years), 12, 31)

    def knows(self, day: date) -> bool:
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        if not self.knows(day):
            raise CalendarNotConfigured(day.year)
        if day in self._makeup:
            return True
        return day.weekday() < _SATURDAY and day not in self._off

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (P7: approved on `start`, published by the
        returned day at the latest). `start` itself does not count, whatever it is."""
        if not 0 <= n <= MAX_WORKING_DAYS:
            raise ValueError(f"working days: {n} is outside 0..{MAX_WORKING_DAYS}")
        day, left = start, n
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def model_post_init(self, context: Any, /) -> None:
        self._off = self.days_off
        self._makeup = self.makeup_days

    _off: frozenset[date] = PrivateAttr(default=frozenset())
    _makeup: frozenset[date] = PrivateAttr(default=frozenset())


def calendar_from(tables: dict[str, Any], source: str = "<workdays>") -> WorkingCalendar:
    try:
        return WorkingCalendar.model_validate(tables)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from exc


def load_calendar(path: str | Path | None = None) -> WorkingCalendar:
    """The calendar from `path` (default: the packaged workdays-cn.toml). Raises
    ConfigError naming the file and the fault."""
    file = Path(path) if path is not None else DEFAULT_WORKDAYS
    try:
        with file.open("rb") as f:
            tables = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    return calendar_from(tables, str(file))
