"""Schema migrations: Alembic runs synchronously on the async engine's connection
(`run_sync`)."""

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import PROJECT_ROOT


def alembic_config() -> Config:
    return Config(toml_file=PROJECT_ROOT / "pyproject.toml")


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_run, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_run, command.downgrade, revision)


def _run(connection: Connection, step: object, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    step(config, revision)  # type: ignore[operator]
