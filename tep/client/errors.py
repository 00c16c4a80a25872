"""The error the client raises for every problem the API answers."""

from __future__ import annotations

import json
from typing import Any

import httpx

from eventstore.errors import TepError

__all__ = ["TepApiError"]


class TepApiError(TepError):
    """The API answered an error (an RFC 9457 problem document).

    Attributes:
        status: the HTTP status.
        title: the kind of problem; ``type`` its URI (``urn:tep:problem:<slug>``).
        detail: this occurrence, in one line.
        problems: each validation problem, ``{"loc": [...], "message": "..."}`` (empty when
            the request was not invalid).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type: str = "about:blank",
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.problems = problems or []
        message = f"{status} {title}" + (f": {detail}" if detail else "")
        if self.problems:
            message += "; " + "; ".join(_problem_line(p) for p in self.problems)
        super().__init__(message)

    @classmethod
    def from_response(cls, response: httpx.Response) -> TepApiError:
        """The error of a non-success response (a problem document, or whatever it was)."""
        try:
            document = json.loads(response.content)
        except ValueError:
            document = None
        if not isinstance(document, dict) or "title" not in document:
            text = response.text[:200] if response.content else None
            return cls(response.status_code, response.reason_phrase or "Error", text)
        problems = document.get("problems")
        return cls(
            int(document.get("status", response.status_code)),
            str(document["title"]),
            document.get("detail"),
            type=str(document.get("type", "about:blank")),
            problems=problems if isinstance(problems, list) else None,
        )


def _problem_line(problem: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in problem.get("loc", []))
    message = str(problem.get("message", ""))
    return f"{where}: {message}" if where else message
