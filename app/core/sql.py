"""Portable SQL pieces that SQLite and PostgreSQL spell differently."""

import uuid
from typing import Any

from sqlalchemy import Boolean, Uuid
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class json_array_contains(FunctionElement[bool]):  # noqa: N801 - reads like the SQL function
    """True when a JSON array column holds the given string."""

    type = Boolean()
    inherit_cache = True
    name = "json_array_contains"


@compiles(json_array_contains, "postgresql")
def _postgresql(element: json_array_contains, compiler: Any, **kw: Any) -> str:
    array, value = list(element.clauses)
    return (
        f"(CAST({compiler.process(array, **kw)} AS JSONB) "
        f"@> jsonb_build_array(CAST({compiler.process(value, **kw)} AS TEXT)))"
    )


@compiles(json_array_contains, "sqlite")
def _sqlite(element: json_array_contains, compiler: Any, **kw: Any) -> str:
    array, value = list(element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(array, **kw)}) "  # noqa: S608
        f"WHERE json_each.value = {compiler.process(value, **kw)})"
    )


class uuid_from_text(FunctionElement[uuid.UUID]):  # noqa: N801 - reads like the SQL function
    """A UUID written as text (as `str(uuid)` writes it: the change feed's resource ids),
    to compare with a UUID column as each database stores one: PostgreSQL's uuid, SQLite's
    32 hex digits (SQLAlchemy's `Uuid` there)."""

    type = Uuid()
    inherit_cache = True
    name = "uuid_from_text"


@compiles(uuid_from_text, "postgresql")
def _postgresql_uuid(element: uuid_from_text, compiler: Any, **kw: Any) -> str:
    (text,) = list(element.clauses)
    return f"CAST({compiler.process(text, **kw)} AS UUID)"


@compiles(uuid_from_text, "sqlite")
def _sqlite_uuid(element: uuid_from_text, compiler: Any, **kw: Any) -> str:
    (text,) = list(element.clauses)
    return f"replace({compiler.process(text, **kw)}, '-', '')"
