"""Settings, read from the environment (prefix ``DORSI_``) or a ``.env`` file."""

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as UnreadableSetting

from app.core.forwarded import check_entry

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
    compression_min_bytes: Annotated[int, Field(ge=0, le=64 * 1024 * 1024)] = 1024

    # Sign-in. Outside development mode, start-up refuses to go on without a secret.
    secret_key: Annotated[SecretStr | None, Field(min_length=32)] = None
    access_token_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    refresh_token_days: Annotated[int, Field(ge=1, le=365)] = 30
    # A used refresh token presented again this soon answers its successor (concurrent or
    # retried refreshes of one app); later, it is taken as stolen. 0: no grace at all.
    refresh_reuse_seconds: Annotated[int, Field(ge=0, le=300)] = 30
    access_code_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    password_hashing: Literal["standard", "fast"] = "standard"
    sign_in_rate_limit: Annotated[str, Field(min_length=3)] = "10/minute"
    # Failed sign-ins per account from all addresses together; past it, even the right
    # password is refused until the window moves on.
    sign_in_account_ceiling: Annotated[str, Field(min_length=3)] = "100/hour"
    cors_origins: list[str] = []
    # Proxies whose X-Forwarded-For and Forwarded headers name the client (comma-separated
    # addresses or networks, or `*`). Unset: 127.0.0.1 in development, none otherwise.
    forwarded_allow_ips: str | None = None
    # Clinic sync: changes older than this may be pruned (`dorsi prune-changes`); a feed
    # cursor from before what is kept answers 410, and the client exports again.
    change_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    # On SIGTERM the server stops accepting, and gives requests in flight this long to
    # finish before it cancels them and exits.
    shutdown_grace_seconds: Annotated[int, Field(ge=1, le=600)] = 30
    # A POST with an Idempotency-Key whose process died before answering blocks retries of
    # that key (409) this long; keep it above the longest a POST takes.
    idempotency_stale_seconds: Annotated[int, Field(ge=1, le=3600)] = 120
    # Run the worker (`dorsi worker`) inside each API process; `dorsi serve` sets it in
    # development. In production the worker is a process of its own.
    in_process_worker: bool = False
    # FHIR `$export` jobs are queued in the database; until `dorsi worker` runs them, the
    # app that took the request runs each once it has answered. Off: they wait for a worker.
    fhir_export_in_process: bool = True

    @field_validator("sign_in_rate_limit", "sign_in_account_ceiling")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError("not a rate such as '10/minute'") from None
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str | None) -> str | None:
        if value is not None:
            for entry in value.split(","):
                try:
                    check_entry(entry)
                except ValueError:
                    raise ValueError(
                        f"{entry.strip()!r} is not an address, a network or *"
                    ) from None
        return value

    @property
    def trusted_proxies(self) -> list[str]:
        """The proxies whose forwarded headers are believed (see forwarded_allow_ips)."""
        if self.forwarded_allow_ips is None:
            return ["127.0.0.1"] if self.environment == Environment.development else []
        return [e.strip() for e in self.forwarded_allow_ips.split(",") if e.strip()]

    @model_validator(mode="after")
    def _secret_outside_development(self) -> "Settings":
        if self.secret_key is None and self.environment != Environment.development:
            raise ValueError(
                "DORSI_SECRET_KEY must be set (32+ characters) outside development mode"
            )
        return self


class SettingsError(SystemExit):
    """Start-up stops here, naming each bad setting by its environment variable."""

    def __init__(self, error: ValidationError) -> None:
        lines = [
            f"  {ENV_PREFIX}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else f"  {e['msg']}"
            for e in error.errors()
        ]
        super().__init__("Dorsi cannot start, invalid setting(s):\n" + "\n".join(lines))


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(error) from None
    except UnreadableSetting as error:
        # A value that is not even parseable (a list setting that is not JSON, say).
        raise SystemExit(f"Dorsi cannot start, invalid setting: {error}") from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
