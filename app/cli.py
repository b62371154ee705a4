"""The `dorsi` command: migrate, serve, create clinics and API clients, write the OpenAPI
document, check health."""

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer

# Commands import what they use when they run: `dorsi healthcheck` runs every 30 seconds
# in a container and should not load the whole application to send one request.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

cli = typer.Typer(help="Dorsi: home-exercise API for people with foot drop.", no_args_is_help=True)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision and load the shipped catalog."""
    from app.core import migrate as migrations
    from app.core.config import get_settings
    from app.core.db import make_engine
    from app.seed import seed

    async def run() -> dict[str, int]:
        engine = make_engine(get_settings())
        try:
            await migrations.upgrade(engine)
            return await seed(engine)
        finally:
            await engine.dispose()

    typer.echo(f"schema at head; catalog: {asyncio.run(run())}")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Migrate, load the catalog, then serve the API. In development mode, also run the
    worker in-process, set up a demo clinic and print how to sign in as each kind of
    caller."""
    from datetime import timedelta

    import uvicorn

    import app.demo as demo
    from app.auth.security import Secrets
    from app.core.config import Environment, get_settings
    from app.core.db import make_engine

    migrate()
    settings = get_settings()
    if settings.environment == Environment.development:
        # The worker runs inside the server, so `make run` needs nothing else.
        os.environ["DORSI_IN_PROCESS_WORKER"] = "true"
        get_settings.cache_clear()

        async def ensure_demo() -> demo.Demo:
            engine = make_engine(settings)
            try:
                lifetime = timedelta(minutes=settings.access_code_minutes)
                return await demo.ensure_demo(engine, Secrets(settings), lifetime)
            finally:
                await engine.dispose()

        typer.echo(demo.instructions(asyncio.run(ensure_demo()), f"http://{host}:{port}"))
    metrics = None
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # The workers count into one directory, so that /metrics sums them all.
        metrics = tempfile.mkdtemp(prefix="dorsi-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again to the handler
    # it found: this one, so that a clean stop exits 0 rather than "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            # Forwarded headers only from the proxies the settings name (none by default
            # outside development); the app reads the client's address the same way.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies,
            log_config=None,
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )
    finally:
        if metrics is not None:
            shutil.rmtree(metrics, ignore_errors=True)


@cli.command()
def create_clinic(
    name: Annotated[str, typer.Option(help="The clinic's name.")],
    admin_email: Annotated[str, typer.Option(help="Email of its first admin.")],
    admin_password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="Password of its first admin (prompted if not given).",
        ),
    ],
) -> None:
    """Create a clinic with its first admin."""
    from app.audit import service as audit
    from app.auth import accounts
    from app.auth.models import Role
    from app.auth.security import Secrets
    from app.core.config import get_settings
    from app.core.db import make_engine, transaction
    from app.core.errors import DorsiError
    from app.core.text import email_address

    try:
        email_address(admin_email)  # the API's rule: what one accepts, the other does
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--admin-email") from None
    if len(admin_password) < 12:
        raise typer.BadParameter("use at least 12 characters", param_hint="--admin-password")
    settings = get_settings()

    async def create() -> str:
        engine = make_engine(settings)
        try:
            async with transaction(engine) as session:
                clinic = await accounts.create_clinic(session, name)
                admin = await accounts.create_clinician(
                    session, Secrets(settings), clinic.id, admin_email, admin_password, Role.admin
                )
                made = {"name": clinic.name}
                await audit.record_system(
                    session,
                    clinic.id,
                    "create",
                    "clinic",
                    clinic.id,
                    changes=audit.changes_between({}, made),
                )
                person: dict[str, object] = {
                    "email": admin.email,
                    "role": admin.role,
                    "active": admin.active,
                }
                await audit.record_system(
                    session,
                    clinic.id,
                    "create",
                    "clinician",
                    admin.id,
                    changes=audit.changes_between({}, person),
                )
            return f"clinic {clinic.id}\nadmin {admin.id} <{admin.email}>"
        finally:
            await engine.dispose()

    try:
        typer.echo(asyncio.run(create()))
    except DorsiError as error:
        raise typer.BadParameter(str(error.detail)) from None


@cli.command()
def worker() -> None:
    """Run the background work until SIGTERM or SIGINT: webhook deliveries, clinical
    alerts, overview figures recomputed as each patient's local day ends, and pruning of
    old changes, idempotency keys and expired sign-ins. Run as many as you like."""
    from app.core import heap
    from app.core.config import get_settings
    from app.core.db import make_engine
    from app.core.logging import configure_logging
    from app.worker.runner import Worker

    settings = get_settings()
    configure_logging(settings.log_level)
    heap.settle()

    async def run() -> None:
        engine = make_engine(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        try:
            await Worker(engine, settings).run(stop)
        finally:
            await engine.dispose()

    asyncio.run(run())


@cli.command()
def prune_changes() -> None:
    """Delete the change feed's changes older than DORSI_CHANGE_RETENTION_DAYS now (the
    worker does it hourly): a clinic system whose cursor is older then gets 410 and exports
    again."""
    from datetime import timedelta

    from app.core.config import get_settings
    from app.core.db import make_engine
    from app.sync.retention import prune_changes as prune

    settings = get_settings()

    async def run() -> dict[uuid.UUID, int]:
        engine = make_engine(settings)
        try:
            return await prune(engine, timedelta(days=settings.change_retention_days))
        finally:
            await engine.dispose()

    pruned = asyncio.run(run())
    typer.echo(
        f"pruned {sum(pruned.values())} changes older than "
        f"{settings.change_retention_days} days in {len(pruned)} clinics"
    )


@cli.command()
def check_records(
    clinic_id: Annotated[
        uuid.UUID | None, typer.Option(help="Only this clinic's records (default: all).")
    ] = None,
) -> None:
    """Report stored adherence records dated outside the days their plan version was in
    force (uploads refuse such records now; older ones stay, reported, never dropped): one
    JSON line each on stdout, the count on stderr; exits 1 if there are any."""
    import json

    from app.adherence.outside import outside_records
    from app.core.config import get_settings
    from app.core.db import make_engine, transaction

    async def run() -> list[dict[str, str | int]]:
        engine = make_engine(get_settings())
        try:
            async with transaction(engine) as session:
                found = await outside_records(session, clinic_id)
        finally:
            await engine.dispose()
        return [
            {
                "id": str(o.id),
                "clinic_id": str(o.clinic_id),
                "patient_id": str(o.patient_id),
                "plan_id": str(o.plan_id),
                "plan_version": o.plan_version,
                "performed_on": o.performed_on.isoformat(),
                "field": o.field,
                "reason": o.reason,
            }
            for o in found
        ]

    found = asyncio.run(run())
    for entry in found:
        typer.echo(json.dumps(entry))
    typer.echo(f"{len(found)} records outside their plan", err=True)
    if found:
        raise typer.Exit(1)


@cli.command()
def create_client(
    clinic_id: Annotated[uuid.UUID, typer.Option(help="The clinic the client acts in.")],
    name: Annotated[str, typer.Option(help="What the client is, e.g. the EHR's name.")],
    scope: Annotated[list[str], typer.Option(help="A scope to grant; repeat for more.")],
) -> None:
    """Create an API client for a clinic system; prints its id and secret (shown once)."""
    from app.audit import service as audit
    from app.auth import accounts
    from app.auth.models import Clinic
    from app.auth.principal import Scope
    from app.auth.security import Secrets
    from app.core.config import get_settings
    from app.core.db import make_engine, transaction

    unknown = sorted(set(scope) - {s.value for s in Scope})
    if unknown:
        choices = ", ".join(s.value for s in Scope)
        raise typer.BadParameter(f"unknown {unknown}; choose from {choices}", param_hint="--scope")
    settings = get_settings()

    async def create() -> str:
        engine = make_engine(settings)
        try:
            async with transaction(engine) as session:
                if await session.get(Clinic, clinic_id) is None:
                    raise typer.BadParameter(f"no clinic {clinic_id}", param_hint="--clinic-id")
                client, secret = await accounts.create_api_client(
                    session, Secrets(settings), clinic_id, name, [Scope(s) for s in scope]
                )
                made = {"name": client.name, "scopes": list(client.scopes)}
                await audit.record_system(
                    session,
                    clinic_id,
                    "create",
                    "api_client",
                    client.id,
                    changes=audit.changes_between({}, made),
                )
            return f"client_id {client.id}\nclient_secret {secret}"
        finally:
            await engine.dispose()

    typer.echo(asyncio.run(create()))


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = (
        PROJECT_ROOT / "openapi.yaml"
    ),
) -> None:
    """Write the OpenAPI document generated from the app."""
    output.write_text(openapi_yaml(), encoding="utf-8")
    typer.echo(f"wrote {output}")


def openapi_yaml() -> str:
    import yaml

    from app.main import create_app

    class Dumper(yaml.SafeDumper):
        """Writes multi-line strings (descriptions) as readable `|` blocks."""

    def string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, string)
    document = create_app().openapi()
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


@cli.command()
def healthcheck(
    url: Annotated[str, typer.Option(help="Liveness URL.")] = "http://127.0.0.1:8000/healthz",
) -> None:
    """Exit 0 when the server answers its liveness check (for container HEALTHCHECK)."""
    try:
        response = httpx.get(url, timeout=3)
    except httpx.HTTPError as error:
        typer.echo(f"unhealthy: {error}", err=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        typer.echo(f"unhealthy: HTTP {response.status_code}", err=True)
        raise typer.Exit(1)
    typer.echo("healthy")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
