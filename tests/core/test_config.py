"""Settings: read from DORSI_* variables; a bad value stops start-up and names the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.core.config import SettingsError, load_settings

DORSI = Path(sys.executable).with_name("dorsi")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DORSI_* variable from the caller's shell, and no .env file in the working directory."""
    for name in [n for n in os.environ if n.startswith("DORSI_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DORSI_DATABASE_POOL_SIZE", "7")
    assert load_settings().database_pool_size == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DORSI_DATABASE_POOL_SIZE", "abc"),
        ("DORSI_DATABASE_POOL_SIZE", "0"),
        ("DORSI_DATABASE_URL", "bogus://x"),
        ("DORSI_LOG_LEVEL", "LOUD"),
        ("DORSI_MAX_BODY_BYTES", "10"),
        ("DORSI_ENVIRONMENT", "staging"),
        ("DORSI_SIGN_IN_RATE_LIMIT", "lots"),
        ("DORSI_SIGN_IN_ACCOUNT_CEILING", "lots"),
        ("DORSI_ACCESS_TOKEN_MINUTES", "0"),
        ("DORSI_REFRESH_REUSE_SECONDS", "-1"),
        ("DORSI_REFRESH_REUSE_SECONDS", "301"),
    ],
)
def test_bad_setting_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert isinstance(raised.value, SystemExit)
    assert variable in str(raised.value)


def test_the_refresh_reuse_window_is_30_seconds_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().refresh_reuse_seconds == 30
    monkeypatch.setenv("DORSI_REFRESH_REUSE_SECONDS", "0")
    assert load_settings().refresh_reuse_seconds == 0


def test_every_bad_setting_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DORSI_DATABASE_POOL_SIZE", "abc")
    monkeypatch.setenv("DORSI_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "DORSI_DATABASE_POOL_SIZE" in str(raised.value)
    assert "DORSI_LOG_LEVEL" in str(raised.value)


def test_default_database_is_a_sqlite_file_under_the_project_root(project_root: Path) -> None:
    url = make_url(load_settings().database_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database
    database = Path(url.database)
    # Absolute, so the working directory (tmp_path here) does not move it.
    assert database.is_absolute()
    assert database.is_relative_to(project_root)


def test_command_with_a_bad_setting_exits_non_zero_naming_it(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DORSI_")}
    environment["DORSI_DATABASE_URL"] = "bogus://x"
    result = subprocess.run(
        [str(DORSI), "migrate"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DORSI_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unparseable_list_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DORSI_CORS_ORIGINS", "https://a.example")
    with pytest.raises(SystemExit, match="cors_origins"):
        load_settings()
