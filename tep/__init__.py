"""tep: the command line, ``tep up``'s supervisor and the process plumbing every role shares.

This is the only package that wires the roles (orchestrator, executor, projections) together;
none of them imports it.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
