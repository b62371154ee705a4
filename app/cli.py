"""The `dorsi` command: migrate, serve, create clinics and API clients, write the OpenAPI
document, check health."""

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
import yaml
from sqlmodel import Session

from app.auth import accounts, demo
from app.auth.models import Clinic, Role
from app.auth.principal import Scope
from app.auth.security import Secrets
from app.core import migrate as migrations
from app.core.config import PROJECT_ROOT, Environment, get_settings
from app.core.db import make_engine
from app.core.errors import DorsiError

cli = typer.Typer(help="Dorsi: home-exercise API for people with foot drop.", no_args_is_help=True)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision and load the shipped catalog."""
    engine = make_engine(get_settings())
    try:
        migrations.upgrade(engine)
        counts = migrations.seed(engine)
    finally:
        engine.dispose()
    typer.echo(f"schema at head; catalog: {counts}")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Migrate, load the catalog, then serve the API. In development mode, also set up a
    demo clinic and print how to sign in as each kind of caller."""
    migrate()
    settings = get_settings()
    if settings.environment == Environment.development:
        engine = make_engine(settings)
        try:
            found = demo.ensure_demo(
                engine, Secrets(settings), timedelta(minutes=settings.access_code_minutes)
            )
        finally:
            engine.dispose()
        typer.echo(demo.instructions(found, f"http://{host}:{port}"))
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        proxy_headers=True,
        log_config=None,
    )


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
    if len(admin_password) < 12:
        raise typer.BadParameter("use at least 12 characters", param_hint="--admin-password")
    settings = get_settings()
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            clinic = accounts.create_clinic(session, name)
            admin = accounts.create_clinician(
                session, Secrets(settings), clinic.id, admin_email, admin_password, Role.admin
            )
            session.commit()
            typer.echo(f"clinic {clinic.id}\nadmin {admin.id} <{admin.email}>")
    except DorsiError as error:
        raise typer.BadParameter(str(error.detail)) from None
    finally:
        engine.dispose()


@cli.command()
def create_client(
    clinic_id: Annotated[uuid.UUID, typer.Option(help="The clinic the client acts in.")],
    name: Annotated[str, typer.Option(help="What the client is, e.g. the EHR's name.")],
    scope: Annotated[list[Scope], typer.Option(help="A scope to grant; repeat for more.")],
) -> None:
    """Create an API client for a clinic system; prints its id and secret (shown once)."""
    settings = get_settings()
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            if session.get(Clinic, clinic_id) is None:
                raise typer.BadParameter(f"no clinic {clinic_id}", param_hint="--clinic-id")
            client, secret = accounts.create_api_client(
                session, Secrets(settings), clinic_id, name, scope
            )
            session.commit()
            typer.echo(f"client_id {client.id}\nclient_secret {secret}")
    finally:
        engine.dispose()


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = (
        PROJECT_ROOT / "openapi.yaml"
    ),
) -> None:
    """Write the OpenAPI document generated from the app."""
    output.write_text(openapi_yaml(), encoding="utf-8")
    typer.echo(f"wrote {output}")


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (descriptions) as readable `|` blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def openapi_yaml() -> str:
    from app.main import create_app

    document = create_app().openapi()
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


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
