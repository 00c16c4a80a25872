"""The HTTP API: FastAPI over the StateManager (``tep api``; see docs/api.md).

``tep.api.app.create_app`` builds the application, ``tep.api.config.ApiSettings`` configures
it; :mod:`tep.api.envelopes` (what it answers) is pure, for :mod:`tep.client`.
"""
