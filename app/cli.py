"""The `dorsi` command: migrate, seed, serve, write the OpenAPI document, check health."""

from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
import yaml

from app.core import migrate as migrations
from app.core.config import PROJECT_ROOT, get_settings
from app.core.db import make_engine

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
    """Migrate, load the catalog, then serve the API."""
    migrate()
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
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = (
        PROJECT_ROOT / "openapi.yaml"
    ),
) -> None:
    """Write the OpenAPI document generated from the app."""
    output.write_text(openapi_yaml(), encoding="utf-8")
    typer.echo(f"wrote {output}")


def openapi_yaml() -> str:
    from app.main import create_app

    return yaml.safe_dump(create_app().openapi(), sort_keys=False, allow_unicode=True)


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
