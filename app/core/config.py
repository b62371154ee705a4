"""Settings, read from the environment (prefix ``DORSI_``) or a ``.env`` file."""

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'dorsi.db'}"
ENV_PREFIX = "DORSI_"


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every knob Dorsi has. The README lists them; a bad value stops start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    environment: Environment = Environment.development
    database_url: Annotated[str, Field(pattern=r"^(sqlite|postgresql)(\+\w+)?://")] = (
        DEFAULT_DATABASE_URL
    )
    database_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    log_level: Annotated[str, Field(pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")] = "INFO"
    response_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024


class SettingsError(SystemExit):
    """Start-up stops here, naming each bad setting by its environment variable."""

    def __init__(self, error: ValidationError) -> None:
        lines = [
            f"  {ENV_PREFIX}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        ]
        super().__init__("Dorsi cannot start, invalid setting(s):\n" + "\n".join(lines))


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(error) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
