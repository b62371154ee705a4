"""Checks every RFC 9457 problem answer must pass, shared by the tests that expect one."""

from typing import Any

from httpx import Response

from app.core.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE


def assert_problem(response: Response, status: int, slug: str) -> dict[str, Any]:
    """The response is a complete problem document of this status and type; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"{PROBLEM_BASE}{slug}"
    assert problem["status"] == status
    assert isinstance(problem["title"], str)
    assert problem["title"]
    assert "detail" in problem
    assert problem["instance"] == response.request.url.path
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem
