"""The token endpoint's errors as RFC 6749 section 5.2 has them, so that OAuth2 client
libraries (authlib, oauthlib, golang.org/x/oauth2…) read them as errors.

Each is still an RFC 9457 problem, with `error` and `error_description` as extension
members: 400 for a request the endpoint refuses, 401 with `WWW-Authenticate: Basic` for a
client that authenticated with HTTP Basic and is not valid. Whatever else the token
endpoint answers (a body it cannot read, one in another media type, too many attempts)
carries an `error` as well, so that no client takes a problem for a token.
"""

import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar, Literal

from fastapi.routing import APIRoute
from pydantic import ConfigDict, Field

from app.core.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, DorsiError, FieldError, Problem

ErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    # RFC 8628's code for "back off, then try again" at the token endpoint: answered with
    # 429 and `Retry-After` when sign-in attempts are past their limit.
    "slow_down",
]


class OAuthError(DorsiError):
    """An RFC 6749 error of the token endpoint."""

    status: ClassVar[int] = 400
    error: ClassVar[ErrorCode] = "invalid_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers, members={"error": self.error})


class InvalidRequest(OAuthError):
    slug, error = "invalid-request", "invalid_request"


class InvalidGrant(OAuthError):
    """Wrong username or password, or an account that cannot sign in."""

    slug, error = "invalid-grant", "invalid_grant"


class InvalidScope(OAuthError):
    slug, error = "invalid-scope", "invalid_scope"


class UnsupportedGrantType(OAuthError):
    slug, error = "unsupported-grant-type", "unsupported_grant_type"


class InvalidClient(OAuthError):
    """A client id and secret sent as form fields that are not valid."""

    slug, error = "invalid-client", "invalid_client"


class InvalidBasicClient(InvalidClient):
    """A client that authenticated with HTTP Basic and is not valid: 401 and a challenge
    (RFC 6749 section 5.2)."""

    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="dorsi"'})


class OAuthProblem(Problem):
    """A problem of the token endpoint, which is also an RFC 6749 error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": f"{PROBLEM_BASE}invalid-client",
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": "The client credentials are not valid.",
                    "instance": "/v1/auth/token",
                    "error": "invalid_client",
                    "error_description": "The client credentials are not valid.",
                }
            ]
        }
    )

    error: ErrorCode = Field(description="The RFC 6749 error code.")
    error_description: str | None = Field(
        default=None, description="The `detail`, in the characters RFC 6749 allows."
    )
    errors: list[FieldError] | None = Field(
        default=None, description="A request that failed validation: each invalid field."
    )


def oauth_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting the token endpoint's errors: each status, and
    any other client error (which also carries an `error`; never a 422)."""
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/OAuthProblem"}}}
    documented: dict[int | str, dict[str, Any]] = {
        status: {
            "model": OAuthProblem,
            "description": HTTPStatus(status).phrase,
            "content": content,
        }
        for status in statuses
    }
    documented["4XX"] = {
        "description": "Any other client error, with an RFC 6749 `error` as well.",
        "content": content,
    }
    return documented


# RFC 6749 section 5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
_NOT_ALLOWED = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _description(detail: Any) -> str | None:
    if not isinstance(detail, str):
        return None
    return _NOT_ALLOWED.sub("'", detail.replace("\u2264", "<=").replace("\u2265", ">="))


def adapt_problem(
    body: Mapping[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The token endpoint's version of a problem: any 4xx carries an RFC 6749 `error`;
    input that failed validation is 400 `invalid_request` (RFC 6749 has no 422)."""
    adapted = dict(body)
    status = adapted["status"]
    if status >= 500:
        return adapted, headers
    if "error" not in adapted:
        if status == 422:
            status = 400
        adapted["error"] = "slow_down" if status == 429 else "invalid_request"
    adapted["status"] = status
    adapted["title"] = HTTPStatus(status).phrase
    adapted["error_description"] = _description(adapted.get("detail"))
    if status != 401:
        headers.pop("WWW-Authenticate", None)
    return adapted, headers


class OAuthRoute(APIRoute):
    """A route whose problems are also RFC 6749 error responses (see `adapt_problem`)."""

    adapt_problem: Callable[
        [Mapping[str, Any], dict[str, str]], tuple[dict[str, Any], dict[str, str]]
    ] = staticmethod(adapt_problem)
