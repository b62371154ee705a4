"""Helpers of the FHIR facade's tests: reading it as a FHIR client would, and checking
every resource it answers against the R4B models of `fhir.resources`."""

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from httpx import AsyncClient, Response

from tests.conftest import Actor

FHIR = "/fhir/R4"
FHIR_JSON = "application/fhir+json"


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, after the R4B model of its type accepted it (unknown elements,
    missing required ones, wrong types and bad codes of required bindings all fail)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


async def fhir_get(client: AsyncClient, actor: Actor, path: str, **params: Any) -> Any:
    """A successful FHIR read or search, its answer checked valid. (``params`` may name
    `status`, a search parameter: so this expects 200.)"""
    url = path if path.startswith("http") else f"{FHIR}/{path}"
    response = await client.get(url, params=params or None, headers=actor.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    return valid(response.json())


def assert_outcome(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is a valid OperationOutcome of this status (and issue type)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR_JSON
    outcome: dict[str, Any] = valid(response.json())
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    if code is not None:
        assert outcome["issue"][0]["code"] == code, outcome
    return outcome


async def everything(client: AsyncClient, actor: Actor, kind: str, **params: Any) -> list[Any]:
    """Every entry of a search, following `link.next` to the end; each Bundle is valid."""
    found: list[Any] = []
    bundle = await fhir_get(client, actor, kind, **params)
    while True:
        assert bundle["type"] == "searchset"
        found += [entry["resource"] for entry in bundle.get("entry", [])]
        after = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not after:
            return found
        bundle = await fhir_get(client, actor, after[0])
