"""Conditional requests (RFC 9110 section 13): ETag matching, and the headers that carry
it; and rendered resources as JSON bodies."""

import re
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from starlette.responses import Response

from app.core.errors import PreconditionFailed, PreconditionRequired

JSON_MEDIA_TYPE = "application/json"
# Signed-in reads: only the caller's own cache may keep them, and must ask again first.
PRIVATE = "private, no-cache"


def rendered_json(rendered: Any) -> bytes:
    """A rendering in Python values (UUIDs, dates, aware times, as a service renders a
    resource straight from its row) as the JSON its response model would write: orjson,
    with UTC written as Z, as pydantic writes it."""
    return orjson.dumps(rendered, option=orjson.OPT_UTC_Z)


def declared_headers(*names: str) -> dict[str, Any]:
    """Response headers as the contract declares them (its `components/headers`)."""
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


# A conditional read: its answer and its 304 carry the ETag.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    200: {"headers": declared_headers("ETag")},
    304: {
        "description": "Not Modified: the `If-None-Match` ETag is current.",
        "headers": declared_headers("ETag"),
    },
}


def written(status: int, *, location: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a write that answers the resource with its ETag (and,
    for a create, its Location)."""
    names = ("ETag", "Location") if location else ("ETag",)
    return {status: {"headers": declared_headers(*names)}}


# One entity tag of a list (RFC 9110 section 8.8.3): an opaque quoted string, weak or not.
# A tag may hold a comma, so a list is read tag by tag rather than split at commas.
_LIST_ELEMENT = re.compile(r'[\s,]*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(,|$)')


def _joined(request: Request, name: str) -> str | None:
    # Several header lines of one name are one comma-separated list (RFC 9110 5.3).
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


def _if_none_match(
    request: Request,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="ETags from earlier answers (a list, or `*`); 304 if one is current.",
        ),
    ] = None,
) -> str | None:
    return _joined(request, "if-none-match")


def _if_match(
    request: Request,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="The ETag you read (a list of them, or `*` for any): 412 if none is "
            "current. Compared strongly: a weak (W/) tag never matches. Writes to plans and "
            "adherence records require it (428 without it).",
        ),
    ] = None,
) -> str | None:
    return _joined(request, "if-match")


IfNoneMatch = Annotated[str | None, Depends(_if_none_match)]
IfMatch = Annotated[str | None, Depends(_if_match)]


def entity_tags(header: str) -> list[str] | None:
    """The tags of an If-Match or If-None-Match list, in order; None if it is not one."""
    tags: list[str] = []
    position = 0
    while position < len(header):
        element = _LIST_ELEMENT.match(header, position)
        if element is None:
            # Only separators left (a trailing comma, spaces) end the list; else malformed.
            return tags if tags and not header[position:].strip(" \t,") else None
        tags.append(element.group(1))
        position = element.end()
    return tags


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires: W/"x" matches "x"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = entity_tags(if_none_match) or []
    return etag.removeprefix("W/") in (tag.removeprefix("W/") for tag in tags)


def etag_matches_strongly(if_match: str, etag: str) -> bool:
    """Strong comparison, as If-Match requires: a weak tag (W/"x") never matches, since
    a write must be based on exactly the representation that was read. A header that is
    not a list of tags matches nothing."""
    if if_match.strip() == "*":
        return True
    return etag in (entity_tags(if_match) or [])


def check_if_match(if_match: str | None, etag: str, what: str, *, required: bool) -> None:
    """The precondition of a write (PATCH or DELETE) to a versioned resource: 412 if the
    client's tag is not current, 428 if it sent none where one is required."""
    if if_match is None:
        if required:
            raise PreconditionRequired(
                f"Send If-Match with the {what}'s ETag, so that concurrent changes are not lost."
            )
        return
    if not etag_matches_strongly(if_match, etag):
        raise PreconditionFailed(f"The {what} changed since you read it; read it again.")


def conditional_json(
    body: bytes, etag: str, if_none_match: str | None, cache_control: str
) -> Response:
    """200 with the body, or 304 when the client already holds this representation."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers=headers)
