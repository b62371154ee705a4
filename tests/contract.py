"""Every response a test receives is checked against the committed contract, `openapi.yaml`,
for its path, method and status: a hand-rendered body can never drift from its schema, and
an answer may carry no status and no header that its operation does not declare.

`make_client` in conftest hooks `check` into every httpx client the tests use.
"""

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import MissingData
from werkzeug.datastructures import Headers, ImmutableMultiDict

from app.core.observability import DEFAULT_HEADERS, SECURITY_HEADERS

CONTRACT = Path(__file__).resolve().parents[1] / "openapi.yaml"


@cache
def contract() -> OpenAPI:
    # Errors are JSON under their own media type; exports are NDJSON, which the contract
    # types as a string (the tests compare each line with the resource's own GET).
    config = Config(
        extra_media_type_deserializers={
            "application/problem+json": orjson.loads,
            "application/fhir+json": orjson.loads,
            "application/x-ndjson": bytes.decode,
            "application/fhir+ndjson": bytes.decode,
        }
    )
    return OpenAPI.from_file_path(str(CONTRACT), config=config)


@cache
def concrete_paths() -> frozenset[str]:
    """The contract's paths without a template parameter."""
    paths = yaml.safe_load(CONTRACT.read_text())["paths"]
    return frozenset(path for path in paths if "{" not in path)


# Headers no operation declares: the transport's own, the browser-security headers sent
# alike on every answer (named in the contract's description), and CORS answers'.
UNDECLARED_HEADERS = frozenset(
    {"content-length", "content-type", "date", "server", "transfer-encoding", "connection"}
    | {name.decode() for name, _ in SECURITY_HEADERS}
    | {name.decode() for name in DEFAULT_HEADERS if name != b"cache-control"}
)
CORS_PREFIX = "access-control-"


@cache
def _operations() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """Each path's matcher and item; concrete paths before templates (OpenAPI 3.1, "Path
    Templating Matching"), so /v1/adherence/batch is not /v1/adherence/{record_id}."""
    paths = yaml.safe_load(CONTRACT.read_text())["paths"]
    matchers = []
    for path, item in sorted(paths.items(), key=lambda entry: entry[0].count("{")):
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        matchers.append((re.compile(f"^{pattern}$"), item))
    return matchers


def declared(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The contract's response for this path, method and status (or its range, `4XX`);
    None when the contract names no such operation."""
    for pattern, item in _operations():
        if pattern.match(path):
            operation = item.get(method.lower())
            if operation is None:
                return None
            responses = operation["responses"]
            found = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
            assert found is not None, f"{method} {path} does not declare {status}"
            return found  # type: ignore[no-any-return]
    return None


def check_headers(response: httpx.Response, method: str) -> None:
    """Raises if the answer carries a header its operation's response does not declare."""
    answer = declared(response.request.url.path, method, response.status_code)
    if answer is None:
        return
    names = {name.lower() for name in answer.get("headers", {})}
    undeclared = sorted(
        name
        for name in response.headers
        if name not in names and name not in UNDECLARED_HEADERS and not name.startswith(CORS_PREFIX)
    )
    assert not undeclared, (
        f"{method} {response.request.url.path} answered {response.status_code} with "
        f"headers the contract does not declare: {undeclared}"
    )


class ContractRequest:
    """An httpx request as openapi-core reads one."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self.request.url.scheme}://{self.request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def body(self) -> bytes | None:
        try:
            return self.request.content or None
        except httpx.RequestNotRead:  # streamed: not checked
            return None

    @property
    def content_type(self) -> str:
        content_type: str = self.request.headers.get("content-type", "")
        return content_type


class ContractResponse:
    """An httpx response as openapi-core reads one."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        content_type: str = self.response.headers.get("content-type", "")
        return content_type

    @property
    def headers(self) -> Headers:
        return Headers(dict(self.response.headers))

    @property
    def data(self) -> bytes | None:
        return self.response.content or None


# Served by the app but not part of the API contract: the docs and the contract itself,
# and the routes that tests add to probe the app (`/probe/...`).
UNDOCUMENTED = ("/docs", "/redoc", "/openapi.json", "/static/", "/probe/")


async def check(response: httpx.Response) -> None:
    """Raises if the response does not match what the contract says of its operation and
    status. Paths the contract does not name (a 404 for an unknown path) are not checked."""
    path = response.request.url.path
    if path.startswith(UNDOCUMENTED) or response.request.method == "OPTIONS":
        return  # the docs, and CORS preflights (answered by the CORS layer, not a route)
    await response.aread()
    request = response.request
    head = request.method == "HEAD"
    if head:
        # HEAD is the GET of the same path without its body (RFC 9110 section 9.3.2): its
        # status must be one the GET documents.
        assert not response.content, "a HEAD answer has no body"
        request = httpx.Request("GET", request.url, headers=request.headers)
    try:
        contract().validate_response(ContractRequest(request), ContractResponse(response))
    except MissingData:
        if not head:
            raise
    except OperationNotFound:
        if response.status_code != 405:
            raise
    except ResponseNotFound:
        # A concrete path is matched before a template (OpenAPI 3.1, "Path Templating
        # Matching"): GET /v1/adherence/batch is an undeclared method of that path, a 405,
        # though openapi-core falls back to GET /v1/adherence/{record_id}.
        if not (response.status_code == 405 and path in concrete_paths()):
            raise
    except PathNotFound:
        if response.status_code not in (404, 405):
            raise
    check_headers(response, request.method)
