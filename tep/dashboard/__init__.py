"""The dashboard: plain HTML, CSS and JavaScript modules that ``tep api`` serves at ``/``.

The page and its files are public (a browser cannot send a bearer token to load a page);
everything they show comes from the API's routes, which the page calls with the token its
user signs in with. See docs/dashboard.md.

Example:
    >>> mount_dashboard(app)  # doctest: +SKIP
"""

from __future__ import annotations

from tep.dashboard.serving import STATIC_DIR, mount_dashboard

__all__ = ["STATIC_DIR", "mount_dashboard"]
