"""The HTTP API: FastAPI over the StateManager (``tep api``; see docs/api.md).

Example:
    >>> from tep.api import ApiSettings, create_app  # doctest: +SKIP
"""

from __future__ import annotations

from tep.api.app import create_app
from tep.api.config import ApiSettings

__all__ = ["ApiSettings", "create_app"]
