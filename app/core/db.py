"""The database engine and the request-scoped session that commits or rolls back."""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, Table, bindparam, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine

from app.core.config import Settings
from app.core.errors import DorsiError


def make_engine(settings: Settings, *, autocommit: bool = False) -> Engine:
    """The engine for ``settings``; ``autocommit`` ones serve single-statement hot paths,
    where BEGIN and COMMIT would double the round trips."""
    url = settings.database_url
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver would BEGIN only before the first write, so SAVEPOINTs and reads ran
    # outside any transaction; SQLAlchemy begins every transaction itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: concurrent transactions queue (busy timeout)
    # rather than failing when a read-then-write one finds its snapshot outdated.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits if the block completes and rolls back if it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def connection_for_reads(engine: Engine, autocommit_engine: Engine | None) -> Iterator[Connection]:
    """A connection for a hot path that reads and records an audit event: on PostgreSQL in
    autocommit, each statement atomic on its own, with no BEGIN or COMMIT round trips;
    elsewhere (SQLite) one transaction, committed if the block completes."""
    if autocommit_engine is not None:
        with autocommit_engine.connect() as connection:
            yield connection
    else:
        with engine.begin() as connection:
            yield connection


def flush_or(session: Session, error: DorsiError) -> None:
    """Write what is pending now; if a constraint refuses it, raise ``error`` instead.

    The savepoint leaves the rest of the transaction usable, so the caller's other work
    (and the request's answer) is unaffected.
    """
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise error from None


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it
    raises. Routes never commit."""
    with transaction(request.app.state.engine) as session:
        yield session


# scope="function" commits before the response is sent, so a client never sees success
# for a write that then failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@cache
def _postgresql_insert(table: Table, columns: tuple[str, ...], skip_conflicts: bool) -> str:
    statement = postgresql_insert(table).values({name: bindparam(name) for name in columns})
    dialect = psycopg.dialect()  # type: ignore[no-untyped-call]
    if skip_conflicts:
        keys = table.primary_key.columns
        return str(statement.on_conflict_do_nothing().returning(*keys).compile(dialect=dialect))
    return str(statement.compile(dialect=dialect))


def insert_many(
    session: Session, table: Table, rows: list[dict[str, Any]], *, skip_conflicts: bool = False
) -> set[Any]:
    """Insert rows (all with the same keys, values psycopg adapts as they are: no JSON) in
    the session's transaction. With ``skip_conflicts``, rows whose key is taken are left
    out (ON CONFLICT DO NOTHING), and the keys actually inserted come back.

    On PostgreSQL this is psycopg's own executemany: one short statement, prepared once per
    connection and pipelined, rather than a long multi-row statement to parse each time.
    """
    if not rows:
        return set()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sql = _postgresql_insert(table, tuple(rows[0]), skip_conflicts)
        # Enums go in as their values (psycopg would send an Enum's name).
        plain = [{k: v.value if isinstance(v, Enum) else v for k, v in r.items()} for r in rows]
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.executemany(sql, plain, returning=skip_conflicts)
            inserted: set[Any] = set()
            while skip_conflicts:
                inserted.update(row[0] for row in cursor.fetchall())
                if not cursor.nextset():
                    break
            return inserted
    if not skip_conflicts:
        connection.execute(sqlite_insert(table), rows)
        return set()
    keys = table.primary_key.columns
    skipping = sqlite_insert(table).on_conflict_do_nothing().returning(*keys)
    return set(connection.execute(skipping, rows).scalars())
