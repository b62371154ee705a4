"""Conditional requests: ETag matching for reads (RFC 9110 section 13)."""

from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires: W/"x" matches "x"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates


def conditional_json(
    body: bytes, etag: str, if_none_match: str | None, cache_control: str
) -> Response:
    """200 with the body, or 304 when the client already holds this representation."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers=headers)
