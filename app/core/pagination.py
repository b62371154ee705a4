"""Cursor (keyset) pagination: one query model with a capped limit and one page schema."""

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import FieldError, InvalidInput
from app.core.timestamps import instant_in_range

CONTROL = re.compile(r"[\x00-\x1f]")
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50

T = TypeVar("T")


class PageQuery(BaseModel):
    """Query parameters every list takes. Unknown parameters are refused, so typos show."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[
        int,
        Field(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, 1 to {MAX_PAGE_SIZE}."),
    ] = DEFAULT_PAGE_SIZE
    cursor: Annotated[
        str | None,
        Field(max_length=512, description="The `next_cursor` of the previous page."),
    ] = None


class Page(BaseModel, Generic[T]):
    """One page of a list, oldest-stable order; follow `next_cursor` until it is null."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The keyset position a cursor stands for; a cursor we did not issue is a 422."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != arity or not all(map(_storable, key)):
        raise invalid_cursor()
    return key


def _storable(value: Any) -> bool:
    """Whether a cursor's value may go to either database as a parameter: a forged one
    could hold what PostgreSQL refuses (NUL) or SQLite cannot bind (a 65-bit integer)."""
    if isinstance(value, str):
        return CONTROL.search(value) is None
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return value is None or isinstance(value, float)


def invalid_cursor() -> InvalidInput:
    return InvalidInput(
        [FieldError(location="query", pointer="#/cursor", detail="Not a cursor Dorsi issued.")]
    )


def split_page(
    rows: list[T], limit: int, key: Callable[[T], list[Any]]
) -> tuple[list[T], str | None]:
    """Lists fetch ``limit + 1`` rows: the extra one only says that another page exists."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]))


def cursor_time(value: Any) -> datetime:
    """A time a cursor holds: aware, and in the years Dorsi takes."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise invalid_cursor() from None
    if moment.tzinfo is None or not instant_in_range(moment):
        raise invalid_cursor()
    return moment


def time_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) position of a cursor whose key is ``[created_at, id]``."""
    created, last = decode_cursor(cursor, 2)
    try:
        return cursor_time(created), uuid.UUID(str(last))
    except (TypeError, ValueError):
        raise invalid_cursor() from None


def number_position(cursor: str) -> int:
    """The position of a cursor whose key is ``[number]`` (a version number)."""
    (number,) = decode_cursor(cursor, 1)
    if type(number) is not int or not 0 <= number < 2**31:
        raise invalid_cursor()
    return number


def time_key(row: Any) -> list[Any]:
    return [row.created_at.isoformat(), str(row.id)]
