"""The stable ``error.code`` values of ``action.attempt.failed``, ``action.failed`` and
``execution.failed``: one enum, used by the orchestrator, the executor and the docs.

Python handlers may use codes of their own (``NonRetryableError("...", code="bad_image")``);
everything this project sets itself is listed here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode"]


class ErrorCode(StrEnum):
    """Why an attempt, an action or an execution failed."""

    TIMEOUT = "timeout"
    """The attempt exceeded its time limit (retried), or a waitpoint was not resumed within its
    ``timeout_s``."""
    REJECTED = "rejected"
    """A waitpoint was resumed with ``--reject REASON`` (a person said no)."""
    CONNECT_ERROR = "connect_error"
    """Connection refused or reset, DNS failure, broken response (retried)."""
    HTTP_4XX = "http_4xx"
    """The target answered 4xx (408 and 429 are retried, others not)."""
    HTTP_5XX = "http_5xx"
    """The target answered 5xx (retried)."""
    OUTPUT_TOO_LARGE = "output_too_large"
    """The response body or handler output exceeds the hard cap (``TEP_PAYLOAD_MAX_BYTES``, or the
    executor's ``--max-output-bytes``), named in the message (not retried). Outputs above the
    inline limit but below the cap are stored by reference instead."""
    OUTPUT_INVALID = "output_invalid"
    """The output does not match the action's ``output_schema``; the message names each
    mismatch by path, e.g. ``output.items[2].price: 'x' is not of type 'number'`` (not
    retried)."""
    INVALID_REQUEST = "invalid_request"
    """Not an absolute http(s) URL, a malformed header, no request, or a request that cannot be
    built from its templates (not retried)."""
    MISSING_SECRET = "missing_secret"
    """A ``{{secrets.NAME}}`` whose variable is not set on the executor (not retried)."""
    HANDLER_ERROR = "handler_error"
    """A Python handler raised, or returned something that is not JSON (retried unless it
    raised ``NonRetryableError``)."""
    UNKNOWN_ACTION_TYPE = "unknown_action_type"
    """No handler for the action's type on this queue (not retried)."""
    INVALID_RESPONSE = "invalid_response"
    """The target's answer is not valid HTTP, e.g. a header over 8 KiB (not retried)."""
    TOO_MANY_REDIRECTS = "too_many_redirects"
    """The target redirected more often than the executor follows (not retried)."""
    TARGET_NOT_ALLOWED = "target_not_allowed"
    """The request (or a redirect) goes to an address the executor's target policy refuses:
    loopback, private, link-local, CGNAT, multicast or cloud metadata unless allowed with
    ``--allow-host`` / ``--allow-cidr`` (not retried)."""
    SECRET_NOT_ALLOWED = "secret_not_allowed"
    """A ``{{secrets.NAME}}`` used in a request to a host (or by a handler type) the secret is
    not granted to (not retried)."""
    INTERRUPTED = "interrupted"
    """An attempt was cut off (executor crash, pause or forced stop) more often than the
    executor's interruption budget allows; the request is dead-lettered."""
    INVALID_CONDITION = "invalid_condition"
    """The action's ``when`` condition cannot be evaluated."""
    INVALID_PLAN = "invalid_plan"
    """``execution.failed``: the submitted plan is invalid."""
    ACTION_FAILED = "action_failed"
    """``execution.failed``: an action failed and nothing handled it."""
    ITEM_FAILED = "item_failed"
    """A for-each action without ``continue_on_error`` failed because one of its items did
    (the message names the first failed item and its error)."""
    FAILED = "failed"
    """An action marked failed through ``StateManager.update_action_status``."""
    SUBPLAN_FAILED = "subplan_failed"
    """A sub-plan action's child execution failed or was cancelled (the message names the
    child and its error)."""
    PLAN_NOT_FOUND = "plan_not_found"
    """A sub-plan action's ``plan_ref`` names no plan in the plan registry."""
    SUBPLAN_TOO_DEEP = "subplan_too_deep"
    """A sub-plan action's child would run deeper than ``TEP_MAX_SUBPLAN_DEPTH``."""
    INPUT_INVALID = "input_invalid"
    """A sub-plan action's input does not match the child plan's ``input_schema``."""
