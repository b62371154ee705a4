"""Portable SQL pieces that SQLite and PostgreSQL spell differently."""

from typing import Any

from sqlalchemy import Boolean
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
