"""The one way Dorsi reaches its database: SQLAlchemy's asyncio engine and the request's
session, which commits when the route returns and rolls back if it raises.

One engine (and so one pool) per process: psycopg 3 (async) on PostgreSQL, aiosqlite on
SQLite. Statements are built once from the models and run on both.
"""

import asyncio
import random
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from sqlalchemy import Executable, Result, Table, event, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.errors import DorsiError
from app.core.observability import POOL_IN_USE, POOL_WAITING


def async_url(database_url: str) -> str:
    """A database URL with Dorsi's async driver for its dialect."""
    url = make_url(database_url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
    url = url.set(drivername=driver[url.get_backend_name()])
    return url.render_as_string(hide_password=False)


CONNECT_TIMEOUT_SECONDS = 5
POOL_TIMEOUT_SECONDS = 10


def make_engine(settings: Settings) -> AsyncEngine:
    """The engine for ``settings``; its pool is the process's only one."""
    url = async_url(settings.database_url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, json_deserializer=orjson.loads
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        poolclass=CountedPool,
        # A database that does not answer is a 503 within seconds, not a request that
        # hangs on the operating system's TCP timeout.
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        json_deserializer=orjson.loads,  # plans' items, read on every summary and recompute
    )
    event.listen(engine.sync_engine, "connect", _postgresql_connect)
    event.listen(engine.sync_engine, "checkout", _checkout)
    # After _checkout: a connection it refuses is replaced, not counted twice.
    event.listen(engine.sync_engine, "checkout", lambda *_: POOL_IN_USE.inc())
    event.listen(engine.sync_engine, "checkin", lambda *_: POOL_IN_USE.dec())
    return engine


class CountedPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, showing in /metrics who waits for a connection."""

    def _do_get(self) -> ConnectionPoolEntry:
        POOL_WAITING.inc()
        try:
            return super()._do_get()
        finally:
            POOL_WAITING.dec()


def _checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server ended while it waited (a restart, an ended backend)
    is replaced before a request uses it: the pool makes a new one when this raises.

    The server sends its reason and closes, so the socket reads as ready; an idle
    connection that is still open hears nothing. Checked without a round trip."""
    connection = dbapi_connection.driver_connection
    if connection.closed:
        raise DisconnectionError("The database closed this pooled connection.")
    poll = select.poll()  # not select.select, which refuses descriptors past 1023
    poll.register(connection.pgconn.socket, select.POLLIN)
    if poll.poll(0):
        raise DisconnectionError("The database ended this pooled connection.")


def _postgresql_connect(dbapi_connection: Any, _record: Any) -> None:
    # Times then come back in UTC itself (not a zone that happens to be UTC), which
    # `UTCDateTime` keeps as they are: converting every time read from a zone costs more
    # than the rest of reading a bulk export's row. No statement depends on the session's
    # zone; a pooler in transaction mode (PgBouncer) keeps TimeZone per client.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_connection.autocommit = autocommit


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver would BEGIN only before the first write, so SAVEPOINTs and reads ran
    # outside any transaction; SQLAlchemy begins every transaction itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


SNAPSHOT_OPTION = "dorsi_snapshot"


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: concurrent transactions queue (busy timeout)
    # rather than failing when a read-then-write one finds its snapshot outdated. A
    # snapshot (`snapshot`) only reads: a deferred BEGIN, which in WAL mode holds one
    # state of the database from its first read on, while writers go on.
    if connection.get_execution_options().get(SNAPSHOT_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, for statements built once rather than through the ORM."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def libpq_url(database_url: str) -> str:
    """A PostgreSQL database URL as libpq itself takes it (psql, pg_dump, benchmarks)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose work commits if the block completes and rolls back if it raises."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction that sees one state of the database, from its first
    statement to its end, whatever commits meanwhile: REPEATABLE READ on PostgreSQL, a
    deferred read transaction on SQLite (WAL). Writers are not held up by it."""
    async with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            await connection.execution_options(**{SNAPSHOT_OPTION: True})
        async with connection.begin():
            yield connection


async def flush_or(session: AsyncSession, error: DorsiError) -> None:
    """Write what is pending now; if a constraint refuses it, raise ``error`` instead.

    The savepoint leaves the rest of the transaction usable, so the caller's other work
    (and the request's answer) is unaffected.
    """
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise error from None


async def execute(
    session: AsyncSession,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Result[Any]:
    """Run a Core statement (a select of columns, an insert, an update) in the session's
    transaction, after writing what the session has pending, as ``session.exec`` does for
    the ORM. (sqlmodel types ``exec`` for its own selects only, and marks ``execute``
    deprecated.)"""
    result: Result[Any] = await session.exec(statement, params=params)  # type: ignore[call-overload]
    return result


T = TypeVar("T")


async def retried(
    session: AsyncSession, work: Callable[[], Awaitable[T]], *, attempts: int = 4
) -> T:
    """``work`` in a savepoint; if the database refuses it for a reason that may not come
    again (a deadlock, a serialization failure), back to the savepoint and again, after a
    random pause that grows with each attempt. The last failure is raised.

    Only locks taken inside the savepoint are given up by going back to it: ``work``
    should be the transaction's first write, or a retry meets the same wait again.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with session.begin_nested():
                return await work()
        except DBAPIError as error:
            if attempt == attempts or not _retryable_in_place(error):
                raise
        await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 (jitter)
    raise AssertionError("unreachable")


# A deadlock or a serialization failure: going back to the savepoint gives up what it
# locked. A lost connection cannot be retried inside its transaction: the request answers
# 503 and the client tries again.
_RETRYABLE_IN_PLACE = frozenset({"40P01", "40001"})


def _retryable_in_place(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return not error.connection_invalidated and sqlstate in _RETRYABLE_IN_PLACE


def dialect_of(session: AsyncSession) -> str:
    """The session's database dialect: ``postgresql`` or ``sqlite``."""
    name: str = session.get_bind().dialect.name
    return name


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back if it
    raises. Routes never commit."""
    async with transaction(request.app.state.engine) as session:
        yield session


# scope="function" commits before the response is sent, so a client never sees success
# for a write that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
