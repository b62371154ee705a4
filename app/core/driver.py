"""What SQLAlchemy does not do for Dorsi, and so the only place it talks to a driver
itself: many rows in one statement, and listening for PostgreSQL's notifications.

On PostgreSQL the rows go as one binary array per column that varies, unnested into rows
(``INSERT ... SELECT FROM unnest(...)``): prepared once per connection, executed once,
and cheaper to send than one execution (or one parameter) per value. SQLAlchemy would
send each array as text. On SQLite the rows go through SQLAlchemy's executemany.
"""

import re
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import psycopg as postgresql_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import libpq_url


@cache
def _postgresql_insert(
    table: Table, columns: tuple[str, ...], common: tuple[str, ...], skip_conflicts: bool
) -> str:
    """INSERT ... SELECT from one binary array per column that varies, unnested into rows
    in order, and one value for each column that does not."""
    dialect = postgresql_dialect.dialect()  # type: ignore[no-untyped-call]
    quote = dialect.identifier_preparer.quote

    def cast(name: str, suffix: str = "") -> str:
        # The column's type without its length: the insert itself then checks a value's
        # length (a CAST to VARCHAR(n) would cut it short instead).
        kind = re.sub(r"[(].*[)]", "", table.c[name].type.compile(dialect=dialect))
        return f"CAST(%({name})b AS {kind}{suffix})"

    arrays = ", ".join(cast(name, "[]") for name in columns)
    names = ", ".join(quote(name) for name in columns)
    values = ", ".join([*(f"given.{quote(name)}" for name in columns), *map(cast, common)])
    # Names and types come from the table's definition, never from input. The rows go in
    # in the order given, so that ids a sequence draws for them follow it, and so that
    # locks are taken in that order (see `insert_many`).
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns + common))})"  # noqa: S608
        f" SELECT {values} FROM unnest({arrays}) WITH ORDINALITY AS given({names}, given_position)"
        " ORDER BY given_position"
    )
    if skip_conflicts:
        keys = ", ".join(quote(key.name) for key in table.primary_key.columns)
        sql += f" ON CONFLICT DO NOTHING RETURNING {keys}"
    return sql


async def insert_many(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    common: dict[str, Any] | None = None,
    skip_conflicts: bool = False,
) -> set[Any]:
    """Insert rows (all with the same keys) in the session's transaction, in the order
    given, each with the values in ``common`` (in place of its own, if it has them).
    Values go to the driver as they are: no JSON, and enums only as StrEnums, which it
    sends as their values. With ``skip_conflicts``, rows whose key is taken are left out
    (ON CONFLICT DO NOTHING, on whichever unique key is taken: the primary key, composite
    or not), and the keys actually inserted come back: the value of a one-column primary
    key, a tuple in the key's column order for a composite one.

    With ``skip_conflicts``, rows are inserted in key order, whatever order they came in.
    Each row locks its key until commit, and a row whose key another transaction holds
    uncommitted waits for it: two transactions inserting overlapping keys in different
    orders would each wait for the other (a deadlock). In one order, the later one waits
    only for the earlier one.
    """
    if not rows:
        return set()
    common = common or {}
    if skip_conflicts:
        keys = [key.name for key in table.primary_key.columns]
        rows = sorted(
            rows, key=lambda row: tuple(str(common.get(key, row.get(key))) for key in keys)
        )
    composite = len(table.primary_key.columns) > 1
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        columns = tuple(name for name in rows[0] if name not in common)
        sql = _postgresql_insert(table, columns, tuple(common), skip_conflicts)
        values = {name: [row[name] for row in rows] for name in columns} | common
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        driver_error = connection.dialect.loaded_dbapi.Error
        try:
            async with raw.cursor() as cursor:
                await cursor.execute(sql, values)
                if not skip_conflicts:
                    return set()
                found = await cursor.fetchall()
                return {tuple(row) for row in found} if composite else {row[0] for row in found}
        except driver_error as error:
            # As SQLAlchemy raises the driver's errors everywhere else: the error handlers
            # and `retried` know them so.
            raise DBAPIError.instance(sql, None, error, driver_error) from error
    rows = [{**row, **common} for row in rows]
    if not skip_conflicts:
        await connection.execute(sqlite_insert(table), rows)
        return set()
    primary = table.primary_key.columns
    skipping = sqlite_insert(table).on_conflict_do_nothing().returning(*primary)
    inserted = await connection.execute(skipping, rows)
    return {tuple(row) for row in inserted} if composite else set(inserted.scalars())


async def notifications(database_url: str, channel: str) -> AsyncIterator[str]:
    """PostgreSQL only: the payload of each ``NOTIFY`` on ``channel``, from a connection of
    its own (outside the pool: it stays for as long as the caller listens). SQLAlchemy has
    no API for ``LISTEN``, so this one place speaks to the driver. The first value is ``""``,
    once the connection listens; ``psycopg.Error`` or ``OSError`` end it."""
    connection = await psycopg.AsyncConnection.connect(libpq_url(database_url), autocommit=True)
    async with connection:
        await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield ""
        async for notice in connection.notifies():
            yield notice.payload
