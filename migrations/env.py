"""Alembic environment: the connection comes from `app.core.migrate`, or from Dorsi's
settings when `alembic` runs on its own."""

import asyncio
import warnings

from alembic import context
from sqlalchemy import Connection

from app.core.config import get_settings
from app.core.db import make_engine
from app.models import metadata

config = context.config


def _pragma(connection: Connection, statement: str) -> None:
    """Straight to the driver: through SQLAlchemy it would run inside a transaction."""
    if connection.in_transaction():
        connection.commit()
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(statement)
    cursor.close()


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations rebuild tables (copy, drop, rename); with foreign keys enforced,
        # dropping a table that rows still point at would fail. SQLite ignores this pragma
        # inside a transaction, so it is set before the migration's transaction begins.
        _pragma(connection, "PRAGMA foreign_keys = OFF")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    try:
        with context.begin_transaction(), warnings.catch_warnings():
            if sqlite:
                # SQLite cannot reflect expression indexes, so a comparison with the models
                # (`alembic check`) leaves them out and says so; PostgreSQL compares them.
                for message in (
                    "Skipped unsupported reflection of expression-based index",
                    "autogenerate skipping metadata-specified expression-based index",
                ):
                    warnings.filterwarnings("ignore", message=message)
            context.run_migrations()
        connection.commit()
    finally:
        if sqlite:
            _pragma(connection, "PRAGMA foreign_keys = ON")


async def run_with_settings() -> None:
    engine = make_engine(get_settings())
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    asyncio.run(run_with_settings())


if context.is_offline_mode():
    raise SystemExit("Dorsi migrations run online only: `alembic upgrade head`.")
run_online()
