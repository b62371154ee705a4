"""Forwarded headers name the client only when a proxy the settings trust sent them: the
sign-in limits and the audit trail count everyone else by the address they connect from."""

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings, SettingsError, load_settings
from app.core.forwarded import TrustedProxies, client_behind
from app.main import create_app, dispose_engines
from tests.auth.test_sign_in import clinician
from tests.conftest import TEST_SECRET, World, settings_for
from tests.test_cli import DORSI, environment, free_port, wait_until_up

PROXY = "10.9.0.1"


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with a strict sign-in limit, trusting the proxy at PROXY (and its network's
    other proxies, 10.9.0.0/24)."""
    app = create_app(
        settings_for(
            settings.database_url,
            sign_in_rate_limit="2/minute",
            forwarded_allow_ips=f"{PROXY}, 10.9.0.0/24",
        )
    )
    yield app
    await dispose_engines(app)


def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://dorsi.test")


async def failures_until_limited(http: httpx.AsyncClient, email: str, claims: list[str]) -> int:
    """Wrong passwords, each claiming the next forwarded address; how many were answered
    before the first 429 (all of them: none was limited)."""
    for n, claim in enumerate(claims):
        answer = await http.post(
            "/v1/auth/token",
            data={"grant_type": "password", "username": email, "password": "wrong"},
            headers={"X-Forwarded-For": claim},
        )
        if answer.status_code == 429:
            return n
        assert answer.status_code == 400
    return len(claims)


async def test_an_untrusted_peer_is_limited_by_its_own_address(behind_proxy: FastAPI) -> None:
    email = await clinician(behind_proxy)
    claims = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
    async with from_address(behind_proxy, "10.8.0.7") as http:
        assert await failures_until_limited(http, email, claims) == 2


async def test_a_trusted_proxy_is_believed_about_its_client(behind_proxy: FastAPI) -> None:
    email = await clinician(behind_proxy)
    async with from_address(behind_proxy, PROXY) as http:
        # Each client behind the proxy has its own count ...
        claims = ["203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14"]
        assert await failures_until_limited(http, email, claims) == 4
        # ... and one client is limited, whatever it puts in front of the proxy's hop.
        claims = [f"198.51.100.{n}, 203.0.113.20" for n in range(4)]
        assert await failures_until_limited(http, email, claims) == 2


async def test_the_audit_trail_records_the_address_behind_a_trusted_proxy(
    behind_proxy: FastAPI, world: World
) -> None:
    clinician = world["clinician1"].headers
    reads = {}
    for peer, header, value in (
        (PROXY, "X-Forwarded-For", "192.0.2.7"),
        (PROXY, "Forwarded", 'for="[2001:db8::7]:4711";proto=https'),
        ("10.8.0.8", "X-Forwarded-For", "192.0.2.8"),
        ("10.8.0.9", "Forwarded", "for=192.0.2.9"),
    ):
        request_id = f"fwd-{uuid.uuid4().hex[:12]}"
        async with from_address(behind_proxy, peer) as http:
            answer = await http.get(
                f"/v1/patients/{world.patient_a}",
                headers={**clinician, header: value, "X-Request-ID": request_id},
            )
            assert answer.status_code == 200
        reads[request_id] = peer, value
    async with from_address(behind_proxy, "10.8.0.10") as http:
        events = (
            await http.get(
                "/v1/audit-events",
                params={"patient_id": str(world.patient_a), "limit": 100},
                headers=world["admin1"].headers,
            )
        ).json()["items"]
    ips = {e["request_id"]: e["ip"] for e in events if e["request_id"] in reads}
    assert [ips[r] for r in reads] == ["192.0.2.7", "2001:db8::7", "10.8.0.8", "10.8.0.9"]


def test_whom_to_trust() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "::1"])
    headers = [(b"x-forwarded-for", b"1.2.3.4, 10.1.1.1")]
    assert client_behind("10.0.0.1", headers, trusted) == "1.2.3.4"
    assert client_behind("::1", headers, trusted) == "1.2.3.4"
    assert client_behind("192.0.2.1", headers, trusted) == "192.0.2.1"
    assert client_behind("10.0.0.1", [], trusted) == "10.0.0.1"
    unknown = [(b"forwarded", b"for=unknown, for=10.2.2.2")]
    assert client_behind("10.0.0.1", unknown, trusted) == "10.2.2.2"
    garbage = [(b"x-forwarded-for", b"x" * 300)]
    assert client_behind("10.0.0.1", garbage, trusted) == "10.0.0.1"
    assert client_behind("8.8.8.8", headers, TrustedProxies(["*"])) == "1.2.3.4"
    assert client_behind("127.0.0.1", headers, TrustedProxies([])) == "127.0.0.1"


def test_none_is_trusted_by_default_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DORSI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DORSI_SECRET_KEY", TEST_SECRET)
    assert load_settings().trusted_proxies == ["127.0.0.1"]  # development
    monkeypatch.setenv("DORSI_ENVIRONMENT", "production")
    assert load_settings().trusted_proxies == []
    monkeypatch.setenv("DORSI_FORWARDED_ALLOW_IPS", "10.0.0.1,10.1.0.0/16")
    assert load_settings().trusted_proxies == ["10.0.0.1", "10.1.0.0/16"]
    monkeypatch.setenv("DORSI_FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.internal")
    with pytest.raises(SettingsError, match="DORSI_FORWARDED_ALLOW_IPS"):
        load_settings()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dorsi serve` outside development, with no proxy named, reached from 127.0.0.1."""
    home: Path = tmp_path_factory.mktemp("forwarded")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stderr = home / "stderr.log"
    env = environment(
        database_url=f"sqlite:///{home / 'dorsi.db'}",
        environment="test",
        secret_key=TEST_SECRET,
        password_hashing="fast",
        sign_in_rate_limit="2/minute",
    )
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(DORSI), "serve", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until_up(process, url, stderr)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_server_does_not_believe_a_local_caller_about_its_address(served: str) -> None:
    statuses = [
        httpx.post(
            f"{served}/v1/auth/token",
            data={"grant_type": "password", "username": "x@clinic.test", "password": "wrong"},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
            timeout=30,
        ).status_code
        for n in range(3)
    ]
    assert statuses == [400, 400, 429]
