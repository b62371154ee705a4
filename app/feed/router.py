"""`GET /v1/changes`: the clinic's change feed, for clinic admins and clinic systems."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette import types as asgi

from app.auth.deps import (
    SecretsDep,
    as_staff,
    caller_for,
    oauth2,
    principal_for,
    staff_session,
)
from app.auth.models import ActorKind, Role
from app.auth.principal import Caller, Scope
from app.core.db import transaction
from app.core.errors import Forbidden, Gone, InvalidInput, NotFound, Unauthorized, responses
from app.feed import export, service
from app.feed.listener import ChangeListener
from app.feed.schemas import ChangePage, ChangeQuery, ChangeType, ExportQuery
from app.sync.signal import SIGNAL

router = APIRouter(tags=["sync"])
# Without the listener (SQLite, or PostgreSQL while it reconnects), a waiting reader also
# looks again this often, for commits made by another process.
RECHECK_SECONDS = 1.0


FEED_SCOPE = Scope.changes_read


async def feed_reader(
    request: Request,
    secrets: SecretsDep,
    authorization: Annotated[str | None, Security(oauth2, scopes=[FEED_SCOPE])],
) -> Caller:
    """A clinic admin, or an API client holding `changes:read`. Checked in a transaction of
    its own, so that a reader that waits holds no connection meanwhile."""
    session_id = staff_session(secrets, authorization)
    async with transaction(request.app.state.engine) as session:
        principal = as_staff(await principal_for(session, session_id), FEED_SCOPE)
    if principal.kind == ActorKind.clinician and principal.role != Role.admin:
        raise Forbidden("Only clinic admins and clinic systems read the change feed.")
    return caller_for(request, principal)


def listener_of(request: Request) -> ChangeListener | None:
    """The process's listener on PostgreSQL (started now if it is not yet), else None."""
    engine: AsyncEngine = request.app.state.engine
    if engine.dialect.name != "postgresql":
        return None
    listener: ChangeListener = request.app.state.change_listener
    listener.start()
    return listener


@router.get(
    "/v1/changes",
    operation_id="listChanges",
    summary="Follow the clinic's changes",
    response_model=ChangePage,
    responses=responses(Unauthorized, Forbidden, Gone, InvalidInput),
)
async def list_changes(
    request: Request,
    caller: Annotated[Caller, Depends(feed_reader)],
    query: Annotated[ChangeQuery, Query()],
) -> Response:
    """Every create, update and delete of the clinic's patients, clinic exercises, plan
    templates, plans (each version), adherence records (each version) and settings, in
    the order their transactions committed. Each item's `data` is the resource as its own
    GET rendered it at that version; a delete is a tombstone (`data` null).

    Follow `next_cursor` (never null) and you see every change exactly once. With `wait`,
    an empty page is answered when a change commits, or when `wait` seconds have passed.

    Changes are kept for `DORSI_CHANGE_RETENTION_DAYS` (90 by default). A cursor from
    before the oldest change kept answers 410 Gone: export again
    (`GET /v1/export/{type}.ndjson`) and follow the feed from that export's cursor.
    """
    after = service.position_of(query.cursor)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + query.wait
    listener = listener_of(request) if query.wait > 0 else None
    with SIGNAL.watch(caller.clinic_id) as watch:
        while True:
            page = await service.read_page(request.app.state.engine, caller, after, query)
            remaining = deadline - loop.time()
            if page.items or remaining <= 0:
                break
            after = page.position
            listening = listener is not None and listener.listening
            await watch.wait(remaining if listening else min(remaining, RECHECK_SECONDS))
    return Response(page.body(), media_type="application/json")


CURSOR_HEADER = "Dorsi-Change-Cursor"
NDJSON = "application/x-ndjson"


class NDJSONResponse(StreamingResponse):
    media_type = NDJSON


class ExportResponse(NDJSONResponse):
    """An export's lines, after its cursor header. Its snapshot is closed however the
    response ends: done, failed, or left by the client (even before the first line)."""

    def __init__(self, started: export.Export) -> None:
        super().__init__(started.lines(), headers={CURSOR_HEADER: started.cursor})
        self._started = started

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._started.close()


@router.get(
    "/v1/export/{type}.ndjson",
    operation_id="exportResources",
    summary="Export every resource of a type",
    response_class=NDJSONResponse,
    responses={
        200: {
            "description": "One resource per line, each in the schema of its own GET "
            "(`getPatient`, `getExercise`, `getPlanTemplate`, `getPlan`, "
            "`getAdherenceRecord`, `getClinic`), in no particular order.",
            "content": {
                NDJSON: {
                    "schema": {
                        "type": "string",
                        "description": "Newline-delimited JSON: one resource per line.",
                    },
                    "example": '{"id": "3f0e8a52-…", "reference": "MRN-0042", …}\n',
                }
            },
            "headers": {
                CURSOR_HEADER: {
                    "required": True,
                    "description": "The change-feed cursor of the export's snapshot: "
                    "follow `GET /v1/changes?cursor=` from it for every later change, "
                    "with no gap and no duplicate.",
                    "schema": {"type": "string", "examples": ["WzQyXQ"]},
                }
            },
        },
        **responses(Unauthorized, Forbidden, NotFound, InvalidInput),
    },
)
async def export_resources(
    request: Request,
    caller: Annotated[Caller, Depends(feed_reader)],
    type: Annotated[ChangeType, Path(description="What to export: the feed's types.")],
    query: Annotated[ExportQuery, Query()],
) -> Response:
    """Every live resource of one type in the clinic (the clinic's own exercises and
    templates; plans and adherence records at their current version), read from one
    consistent snapshot and streamed as NDJSON. Deleted resources are not exported.

    The `Dorsi-Change-Cursor` header is the change feed's cursor of that snapshot: a
    clinic system's first sync exports each type, then follows `GET /v1/changes` from
    the cursor (the oldest of them, if it exported types one after another; changes
    it already has carry versions it can skip).

    Errors before the export begins are problem+json. A failure while it streams ends
    the response unfinished (no final chunk), so the client knows it is incomplete.
    """
    started = await export.open_export(request.app.state.engine, caller, type, query.since)
    return ExportResponse(started)
