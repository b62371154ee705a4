"""FHIR search parameters, read strictly: a parameter the facade does not support, a
modifier, or a value it cannot read answers 400 rather than being ignored (an ignored
filter would hand a clinic system more than it asked for, as if it were what it asked)."""

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement
from starlette.datastructures import QueryParams

from app.core.errors import BadRequest
from app.core.timestamps import instant_in_range

MAX_COUNT = 1000
DEFAULT_COUNT = 50
# Parameters every search takes: the page size, the page (Dorsi's keyset cursor, as
# `link.next` gives it) and the format (JSON is the only one).
COMMON = ("_count", "_cursor", "_format")
FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
PREFIXES = ("eq", "gt", "ge", "lt", "le")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_format(params: QueryParams) -> None:
    """`_format`, wherever given: JSON, by any of its names."""
    for value in params.getlist("_format"):
        if value not in FORMATS:
            raise BadRequest(f"_format {value!r} is not served: only json.")


def check_names(params: QueryParams, supported: Iterable[str]) -> None:
    allowed = set(supported) | set(COMMON)
    unknown = sorted({name for name in params if name not in allowed})
    if unknown:
        raise BadRequest(
            f"Search parameter(s) not supported here: {', '.join(unknown)}. "
            f"Supported: {', '.join(sorted(allowed))}."
        )


def single(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"Give {name} once (separate alternatives with commas).")
    if values and not values[0]:
        raise BadRequest(f"{name} is empty.")
    return values[0] if values else None


def count(params: QueryParams) -> int:
    value = single(params, "_count")
    if value is None:
        return DEFAULT_COUNT
    if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
        raise BadRequest(f"_count must be a whole number from 1 to {MAX_COUNT}.")
    return int(value)


def reference(value: str, kind: str, name: str) -> uuid.UUID:
    """The id of a reference parameter: `Kind/id` or a bare id."""
    text = value.removeprefix(f"{kind}/")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadRequest(f"{name} must be {kind}/<id> or <id>; {value!r} is not.") from None


def one_of(value: str, name: str, allowed: Iterable[str]) -> list[str]:
    """A token parameter's comma-separated alternatives, each one the facade knows."""
    known = set(allowed)
    found = value.split(",")
    wrong = [item for item in found if item not in known]
    if wrong:
        raise BadRequest(f"{name} takes {', '.join(sorted(known))}; not {', '.join(wrong)}.")
    return found


@dataclass(frozen=True)
class Bound:
    """One prefixed date comparison: `ge2026-11-20`. ``moment`` is an instant; ``day`` a
    whole calendar date (the value had no time)."""

    prefix: str
    moment: datetime | None
    day: date | None


def bounds(params: QueryParams, name: str, *, prefixes: tuple[str, ...] = PREFIXES) -> list[Bound]:
    found = []
    for value in params.getlist(name):
        prefix = value[:2] if value[:2] in PREFIXES else "eq"
        text = value[2:] if value[:2] in PREFIXES else value
        if prefix not in prefixes:
            raise BadRequest(f"{name} takes the prefixes {', '.join(prefixes)}; not {prefix}.")
        if DAY.match(text):
            try:
                found.append(Bound(prefix, None, date.fromisoformat(text)))
            except ValueError:
                raise BadRequest(f"{name}: {text!r} is not a date.") from None
            continue
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or not instant_in_range(moment):
            raise BadRequest(
                f"{name}: {text!r} is neither a date (YYYY-MM-DD) nor a time with its offset."
            )
        found.append(Bound(prefix, moment, None))
    return found


def compare(column: Any, prefix: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool] = {
        "eq": lambda: column == value,
        "gt": lambda: column > value,
        "ge": lambda: column >= value,
        "lt": lambda: column < value,
        "le": lambda: column <= value,
    }[prefix]()
    return result


def instant_filters(column: Any, found: list[Bound]) -> list[ColumnElement[bool]]:
    """Bounds on an instant column; a date stands for its whole day in UTC."""
    filters = []
    for bound in found:
        if bound.moment is not None:
            filters.append(compare(column, bound.prefix, bound.moment))
            continue
        assert bound.day is not None
        start = datetime.combine(bound.day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        if bound.prefix == "eq":
            filters += [column >= start, column < end]
        elif bound.prefix in ("gt", "le"):
            filters.append(column >= end if bound.prefix == "gt" else column < end)
        else:
            filters.append(column >= start if bound.prefix == "ge" else column < start)
    return filters


def session_filters(
    instant_column: Any, day_column: Any, found: list[Bound]
) -> list[ColumnElement[bool]]:
    """Bounds on when a session was done: a time compares with the instant, a date with
    the patient's own local date (the day the session counts for)."""
    return [
        compare(instant_column, bound.prefix, bound.moment)
        if bound.moment is not None
        else compare(day_column, bound.prefix, bound.day)
        for bound in found
    ]
