"""Schema migrations and the catalog load, as one step every entry point shares."""

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlmodel import Session

from app.core.config import PROJECT_ROOT
from app.exercises.catalog import load_catalog


def alembic_config() -> Config:
    return Config(toml_file=PROJECT_ROOT / "pyproject.toml")


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.connect() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def seed(engine: Engine) -> dict[str, int]:
    """Load the shipped data (the global exercise catalog); idempotent."""
    with Session(engine) as session:
        counts = load_catalog(session)
        session.commit()
    return counts
