"""Conditional requests (RFC 9110 section 13): ETag matching, and the headers that carry it."""

from typing import Annotated, Any

from fastapi import Header
from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json"
# Signed-in reads: only the caller's own cache may keep them, and must ask again first.
PRIVATE = "private, no-cache"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the `If-None-Match` ETag is current."}
}
IfNoneMatch = Annotated[
    str | None,
    Header(description="An ETag from an earlier answer; 304 if it is still current."),
]
IfMatch = Annotated[
    str | None,
    Header(
        description="The ETag you read: 412 if it changed since. Compared strongly: a weak "
        "(W/) tag never matches. Plans and adherence records require it (428 without it)."
    ),
]


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires: W/"x" matches "x"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


def etag_matches_strongly(if_match: str, etag: str) -> bool:
    """Strong comparison, as If-Match requires: a weak tag (W/"x") never matches, since
    a write must be based on exactly the representation that was read."""
    if if_match.strip() == "*":
        return True
    return etag in (tag.strip() for tag in if_match.split(","))


def conditional_json(
    body: bytes, etag: str, if_none_match: str | None, cache_control: str
) -> Response:
    """200 with the body, or 304 when the client already holds this representation."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers=headers)
