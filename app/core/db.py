"""The database engine and the request-scoped session that commits or rolls back."""

import asyncio
import re
import select
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import Depends, Request
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, Table, event, make_url
from sqlalchemy.dialects.postgresql import psycopg as postgresql_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlmodel import Session, SQLModel, create_engine

from app.core.config import Settings
from app.core.errors import DorsiError


def make_engine(settings: Settings) -> Engine:
    """The engine for ``settings``."""
    url = settings.database_url
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_deserializer=orjson.loads,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        json_deserializer=orjson.loads,  # plans' items, read on every summary and recompute
    )
    event.listen(engine, "checkout", _checkout)
    return engine


def _checkout(dbapi_connection: psycopg.Connection[Any], _record: Any, _proxy: Any) -> None:
    """A pooled connection the server ended while it waited (a restart, an ended backend)
    is replaced before a request uses it: the pool makes a new one when this raises."""
    if _ended_by_server(dbapi_connection):
        raise DisconnectionError("The database ended this pooled connection.")


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, for statements built once rather than through the ORM."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def libpq_url(database_url: str) -> str:
    """A PostgreSQL database URL as psycopg (libpq) itself takes it."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class AsyncConnections:
    """Autocommit PostgreSQL connections for routes that await the database instead of
    holding a worker thread while it answers: at most ``size`` in use at once, idle ones
    kept for the next request.

    Connections belong to the event loop that made them. Used from another loop (a new
    server, a new test), the old ones are dropped and new ones made.
    """

    APPLICATION_NAME = "dorsi-awaited"  # as pg_stat_activity shows them

    def __init__(self, conninfo: str, size: int, connect_timeout: int = 5) -> None:
        self.conninfo = conninfo
        self.size = size
        self.connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for the block; kept for reuse if the block leaves it idle."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(self.size)
        async with self._slots:
            connection = None
            while self._idle and connection is None:
                connection = self._idle.pop()
                if _ended_by_server(connection):
                    await connection.close()
                    connection = None
            if connection is None:
                connection = await self._connect()
            try:
                yield connection
            finally:
                # A statement cut short (a cancelled request) leaves it busy: not reused.
                if connection.info.transaction_status == TransactionStatus.IDLE:
                    self._idle.append(connection)
                else:
                    await connection.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connection = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=self.connect_timeout,
            application_name=self.APPLICATION_NAME,
        )
        set_json_loads(orjson.loads, connection)
        return connection

    def close(self) -> None:
        """Drops the idle connections, also those of a loop that is gone."""
        for connection in self._idle:
            connection.pgconn.finish()
        self._idle = []

    async def aclose(self) -> None:
        for connection in self._idle:
            await connection.close()
        self._idle = []


def _ended_by_server(connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has ended an idle connection (a restart, an ended backend): it
    then sends its reason and closes, so the socket reads as ready; an idle connection
    that is still open hears nothing. Checked without a round trip."""
    if connection.closed:
        return True
    poll = select.poll()  # not select.select, which refuses descriptors past 1023
    poll.register(connection.pgconn.socket, select.POLLIN)
    return bool(poll.poll(0))


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


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Send the statements run in the block together, and read their answers once at its
    end: one round trip rather than one each. Only for writes whose results the block does
    not read; an error surfaces when the block ends. On SQLite, statements simply run.
    """
    session.flush()
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    with connection.connection.driver_connection.pipeline():  # type: ignore[union-attr]
        yield


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it
    raises. Routes never commit."""
    with transaction(request.app.state.engine) as session:
        yield session


# scope="function" commits before the response is sent, so a client never sees success
# for a write that then failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


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
    # in the order given, so that ids a sequence draws for them follow it.
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns + common))})"  # noqa: S608
        f" SELECT {values} FROM unnest({arrays}) WITH ORDINALITY AS given({names}, given_position)"
        " ORDER BY given_position"
    )
    if skip_conflicts:
        keys = ", ".join(quote(key.name) for key in table.primary_key.columns)
        sql += f" ON CONFLICT DO NOTHING RETURNING {keys}"
    return sql


def insert_many(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    common: dict[str, Any] | None = None,
    skip_conflicts: bool = False,
) -> set[Any]:
    """Insert rows (all with the same keys) in the session's transaction, in the order
    given, each with the values in ``common`` (in place of its own, if it has them).
    Values go to psycopg as they are: no JSON, and enums only as StrEnums, which it sends
    as their values. With ``skip_conflicts``, rows whose key is taken are left out (ON
    CONFLICT DO NOTHING), and the keys actually inserted come back.

    On PostgreSQL this is one statement however many rows, each varying column's values in
    one binary array: prepared once per connection, executed once, and cheaper to send than
    one execution (or one parameter) per value.
    """
    if not rows:
        return set()
    common = common or {}
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns = tuple(name for name in rows[0] if name not in common)
        sql = _postgresql_insert(table, columns, tuple(common), skip_conflicts)
        values = {name: [row[name] for row in rows] for name in columns} | common
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, values)
            return {row[0] for row in cursor.fetchall()} if skip_conflicts else set()
    rows = [{**row, **common} for row in rows]
    if not skip_conflicts:
        connection.execute(sqlite_insert(table), rows)
        return set()
    keys = table.primary_key.columns
    skipping = sqlite_insert(table).on_conflict_do_nothing().returning(*keys)
    return set(connection.execute(skipping, rows).scalars())
