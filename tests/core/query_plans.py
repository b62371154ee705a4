"""What the database plans for the statements a request ran, for tests that a page is read
off an index rather than sorted."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine

Statement = tuple[str, Any]


@contextmanager
def statements_run(engine: AsyncEngine, wanted: Callable[[str], bool]) -> Iterator[list[Statement]]:
    """The statements (with their parameters) that ``engine`` runs in the block, of those
    ``wanted`` picks."""
    seen: list[Statement] = []

    def keep(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        if wanted(statement):
            seen.append((statement, parameters))

    # Cursor events fire on the sync engine under the async one.
    event.listen(engine.sync_engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", keep)


async def unsorted_plans(engine: AsyncEngine, statements: list[Statement]) -> list[str]:
    """Each statement's plan, after checking that none sorts rows: each reads its rows in an
    index's order."""
    plans = await explained(engine, statements)
    for plan in plans:
        assert "Sort" not in plan, plan  # PostgreSQL
        assert "TEMP B-TREE" not in plan, plan  # SQLite
    return plans


async def explained(engine: AsyncEngine, statements: list[Statement]) -> list[str]:
    """Each statement's plan, as the database would run it if no table could be scanned
    whole that an index can serve (a handful of test rows would rather be scanned)."""

    def explain_all(connection: Connection) -> list[str]:
        plans = []
        for statement, parameters in statements:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                connection.exec_driver_sql("SET LOCAL enable_sort = off")
                explain = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                plans.append("\n".join(line for (line,) in explain))
            else:
                explain = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plans.append("\n".join(str(row[-1]) for row in explain))
        return plans

    async with engine.connect() as connection:
        try:
            return await connection.run_sync(explain_all)
        finally:
            await connection.rollback()
