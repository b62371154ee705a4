"""What the database plans for the statements a request ran, for tests that a page is read
off an index rather than sorted."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

Statement = tuple[str, Any]


@contextmanager
def statements_run(engine: Engine, wanted: Callable[[str], bool]) -> Iterator[list[Statement]]:
    """The statements (with their parameters) that ``engine`` runs in the block, of those
    ``wanted`` picks."""
    seen: list[Statement] = []

    def keep(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        if wanted(statement):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def unsorted_plans(engine: Engine, statements: list[Statement]) -> list[str]:
    """Each statement's plan, after checking that none sorts rows: each reads its rows in an
    index's order."""
    plans = []
    with engine.connect() as connection:
        for statement, parameters in statements:
            if engine.dialect.name == "postgresql":
                # A handful of test rows would rather be scanned: ask what else can serve.
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                connection.exec_driver_sql("SET LOCAL enable_sort = off")
                explain = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                plan = "\n".join(line for (line,) in explain)
                assert "Sort" not in plan, plan
            else:
                explain = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = "\n".join(str(row[-1]) for row in explain)
                assert "TEMP B-TREE" not in plan, plan
            plans.append(plan)
        connection.rollback()
    return plans
