"""Dates and times a client may send: ISO 8601 text, within the years Dorsi can place.

A time (`Instant`) is RFC 3339 with an offset, a date (`Day`) is `YYYY-MM-DD`; numbers
(read elsewhere as seconds since 1970) are refused. Both must fall in the years 1900 to
2999: every such moment is a date in every time zone and on both databases, and a day
± a year of arithmetic (a summary's weeks, a rollup's windows) stays a date. Outside, the
field is invalid (422 with its pointer; in a batch, that record alone is rejected).
"""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
FIRST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
END_INSTANT = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})"
)
_RANGE = f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _DATE.fullmatch(value)):
        return value
    raise PydanticCustomError("date_format", "Input should be a date as YYYY-MM-DD.")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "datetime_format",
        "Input should be a date and time with its offset (RFC 3339), "
        "for example 2026-11-23T18:30:00+01:00.",
    )


def day_in_range(value: date) -> bool:
    return FIRST_DAY <= value <= LAST_DAY


def instant_in_range(value: datetime) -> bool:
    """Whether an aware time falls in the years Dorsi takes (compared in UTC, without
    converting: a time near year 1 or 9999 may have no UTC date at all)."""
    return FIRST_INSTANT <= value < END_INSTANT


def _check_day(value: date) -> date:
    if not day_in_range(value):
        raise PydanticCustomError("date_range", f"Dates are from {_RANGE}.")
    return value


def _check_instant(value: datetime) -> datetime:
    if not instant_in_range(value):
        raise PydanticCustomError("datetime_range", f"Times are from {_RANGE} (UTC).")
    return value


Day = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_check_day)]
"""A calendar date, YYYY-MM-DD, in the years 1900 to 2999."""

Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_check_instant)]
"""A moment with its UTC offset (RFC 3339), in the years 1900 to 2999."""

__all__ = ["Day", "Instant", "day_in_range", "instant_in_range"]
