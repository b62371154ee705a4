"""Swagger UI and ReDoc served from assets shipped with the app, so they work offline."""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = Path(fastapi_offline.__file__).with_name("static")
ASSET_PREFIX = "/docs-assets"
# The docs pages run their own scripts (and ReDoc a worker); nothing comes from elsewhere.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
)


def install_docs(app: FastAPI) -> None:
    app.mount(ASSET_PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    def page(response: HTMLResponse) -> HTMLResponse:
        response.headers["Content-Security-Policy"] = DOCS_CSP
        response.headers["Cache-Control"] = "no-cache"
        return response

    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return page(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                oauth2_redirect_url="/docs/oauth2-redirect",
                swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{ASSET_PREFIX}/favicon.png",
                swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return page(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return page(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{ASSET_PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSET_PREFIX}/favicon.png",
                with_google_fonts=False,
            )
        )
