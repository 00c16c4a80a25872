"""Python action handlers used by tests (loaded with ``tep executor --handlers``)."""

from __future__ import annotations

from typing import Any

from eventstore.events import ActionExecuteRequested
from executor import NonRetryableError, RetryableError, current_attempt, handler


@handler("resize-image")
async def resize(request: ActionExecuteRequested) -> dict[str, Any]:
    """Doubles ``input.width``; fails twice first when ``input.flaky`` is set."""
    attempt = current_attempt().attempt
    if request.input.get("flaky") and attempt < 3:
        raise RetryableError(f"resizer busy on attempt {attempt}")
    if "width" not in request.input:
        raise NonRetryableError("input.width is required", code="invalid_input")
    return {"width": request.input["width"] * 2, "attempt": attempt}
