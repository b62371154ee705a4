"""Schemathesis hooks for the fuzz run: the checks Schemathesis does not ship.

`st run` loads this module (SCHEMATHESIS_HOOKS) in its own process.
"""

from typing import Any

import schemathesis

# Headers of HTTP itself, not of the API: framing, caching and content negotiation, and
# the security policy sent with every answer alike. Everything else a response carries
# must be declared for its status in the contract.
HTTP_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "date",
        "server",
        "vary",
        "connection",
        "keep-alive",
        "cache-control",
        "content-security-policy",
        "referrer-policy",
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
    }
)


def _declared(case: schemathesis.Case[Any], status: int) -> set[str]:
    responses: dict[str, Any] = case.operation.definition.raw.get("responses", {})
    answer: dict[str, Any] = responses.get(str(status), {})
    return {name.lower() for name in answer.get("headers", {})}


@schemathesis.check
def no_undocumented_header(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Every header of a response is declared for its status, or belongs to HTTP itself."""
    sent = {name.lower() for name in response.headers}
    if case.method.upper() != case.operation.method.upper():
        # A method the path does not declare (the unsupported_method check): the contract
        # has no answer to declare headers on, and RFC 9110 asks the 405 for `Allow`.
        if response.status_code == 405 and "allow" not in sent:
            raise AssertionError("A 405 without Allow")
        return None
    undeclared = sorted(sent - HTTP_HEADERS - _declared(case, response.status_code))
    if undeclared:
        raise AssertionError(
            f"Undocumented header(s) on {response.status_code}: {', '.join(undeclared)}"
        )
    return None
